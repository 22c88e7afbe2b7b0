#!/usr/bin/env bash
# Every GPU check and benchmark in one run, for a lent device machine (issues: rollout engine,
# scale, performance). Runs the package from source; writes one log per check under $OUT
# (the device tool's output folder; ./gpu-results elsewhere). Budget: ~8-9 minutes on an H100.
#
#   bash benchmarks/gpu_checks.sh
#
# The device image has torch + transformers but maybe not pytest/hypothesis: carry their
# wheels (pip download --no-deps pytest pluggy iniconfig hypothesis sortedcontainers
# attrs pytest-timeout into an ignored folder named in `carry`) and set WHEELS to it.
set -u
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
export PYTHONPATH=src${WHEELS:+:$WHEELS}
for whl in ${WHEELS:+$WHEELS/*.whl}; do python -m pip install -q --no-deps "$whl" >/dev/null 2>&1; done
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python -c "import torch, transformers; print(torch.__version__, transformers.__version__)" > "$OUT/versions.txt" 2>&1
timeout 150 python -m pytest -q -m gpu -p no:cacheprovider tests/rollout/test_rollout_gpu.py tests/core/test_core_gpu.py > "$OUT/pytest_gpu.txt" 2>&1
timeout 240 python benchmarks/rollout.py --device cuda --fast-compile > "$OUT/rollout_cuda.txt" 2>&1
timeout 150 python benchmarks/gpu_scale_step.py --steps 2 > "$OUT/gpu_scale_step.txt" 2>&1
tail -n 3 "$OUT"/*.txt
