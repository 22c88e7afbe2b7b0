"""The checks `benchmarks/gpu_checks.sh` runs: one module per check, each `python -m
gpu_checks.<name>` (with `benchmarks/` on the path), each writing one JSON result."""
