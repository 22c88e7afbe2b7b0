#!/usr/bin/env bash
# Build .gpu-carry/ here (a machine with PyPI), the one folder a device call of
# benchmarks/gpu_checks.sh carries to a GPU machine that has no network:
#   .gpu-carry/wheels/               what the device image lacks, as wheels for its Python
#                                    (math-verify and its two dependencies: pure Python)
#   .gpu-carry/mgrpo/lab/<hash>/     the lab model cache the CPU reference runs were made with
#                                    (benchmarks/gpu_checks/reference.json names its sha256)
# then prints the size check (the tree + the carry must stay under the device's limit) and
# the device call to make. docs/algorithm-notes.md, "The GPU device check", explains it.
#
#   bash benchmarks/gpu_carry.sh                      # PYTHON=.venv/bin/python by default
#   DEVICE_PYTHON=3.12 bash benchmarks/gpu_carry.sh   # the device's Python (default 3.12)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DEVICE_PYTHON=${DEVICE_PYTHON:-3.12}
CARRY=.gpu-carry
# the image has torch, transformers, tokenizers, safetensors, sympy, numpy, scipy, pyyaml,
# tqdm, matplotlib, tensorboard, peft, accelerate (docs/algorithm-notes.md); not these:
MISSING="math-verify latex2sympy2_extended antlr4-python3-runtime"

mkdir -p "$CARRY/wheels"
rm -f "$CARRY"/wheels/*.whl
pins=""
for name in $MISSING; do  # the versions this checkout is tested with
  version=$("$PY" -c "import importlib.metadata as m; print(m.version('$name'))")
  pins="$pins $name==$version"
done
echo "wheels for Python $DEVICE_PYTHON (manylinux x86-64):$pins"
# --no-deps: each missing package is named above; one version of each (two stop an install)
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$DEVICE_PYTHON" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$CARRY/wheels" $pins
ls -l "$CARRY/wheels"

# the lab model: the cache entry whose model sha256 the references name (copied, not built:
# a build on another torch or CPU kernel path is another model)
want=$("$PY" -c "import json; print(json.load(open('benchmarks/gpu_checks/reference.json'))['lab_model_sha256'])")
src=""
for dir in ${MGRPO_CACHE_DIR:+$MGRPO_CACHE_DIR/lab/*} "$HOME"/.cache/mgrpo/lab/* "$CARRY"/mgrpo/lab/*; do
  [ -f "$dir/manifest.json" ] || continue
  sha=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['files']['model.safetensors'])" "$dir/manifest.json")
  if [ "$sha" = "$want" ]; then src=$dir; break; fi
done
if [ -z "$src" ]; then
  echo "no lab cache entry with model sha256 $want here: build it with" >&2
  echo "  MGRPO_CACHE_DIR=$PWD/$CARRY/mgrpo mgrpo lab build   (x86-64, kernels pinned to AVX2)" >&2
  echo "and check that its sha256 matches (mgrpo lab info)" >&2
  exit 1
fi
dest="$CARRY/mgrpo/lab/$(basename "$src")"
if [ "$(realpath "$src")" != "$(realpath -m "$dest")" ]; then
  rm -rf "$dest" && mkdir -p "$(dirname "$dest")" && cp -r "$src" "$dest"
fi
echo "lab model: $dest (model sha256 $want)"

# the size check, as the device call will count it
CARRY="$CARRY" DEVICE=cpu PYTHONPATH=src:benchmarks "$PY" -m gpu_checks.size || true
cat <<EOF

device call (one run, carry the folder; the script installs the wheels itself):
  run(command="bash benchmarks/gpu_checks.sh", carry=["$CARRY"], timeout_s=540)
EOF
