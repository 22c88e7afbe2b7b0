# Two entry points for a fresh machine with only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Where torch comes from. Empty = PyPI, whose Linux wheel is the CUDA build (several GB).
# CPU-only machine: make demo TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?=
TORCH_INDEX := $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL),)

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first (GPU users: install your own torch before `pip install -e .`).
	$(PY) -m pip install --quiet torch==2.13.0 $(TORCH_INDEX)
	$(PY) -m pip install --quiet -e '.[dev,data]'
	touch $(STAMP)

install: $(STAMP)

# SRT vs M-GRPO with half of the votes from the momentum model, in the lab world's collapse
# regime (recipe lab-collapse), seed 0, the two runs side by side; README "What the demo shows"
# mgrpo pins a lab model's x86 CPU kernels to AVX2 by default (model.lab_kernels), so the lab
# world and both runs are the same on any x86-64 CPU with AVX2 or AVX512.
demo: $(STAMP)
	$(VENV)/bin/mgrpo compare lab-collapse --presets srt \
	  --arm m-grpo-N8=m-grpo:algorithm.momentum_rollouts=8 --jobs 2 -o runs/demo

# -rs: the summary names every skipped test and why (optional extras, no GPU, no browser)
test: $(STAMP)
	$(PY) -m pytest -q -rs

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV)
