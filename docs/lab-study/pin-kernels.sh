# Sourced by the study scripts (`. docs/lab-study/pin-kernels.sh`), not run on its own.
# The committed runs used x86 CPU kernels pinned to AVX2 with PyTorch's and MKL's own switches:
# the lab world and the runs are then the same on any x86-64 CPU with AVX2, AVX512 included
# (docs/lab-study.md, "Two builds of the same world"). Set them in the environment to take
# another kernel path; other CPU families ignore them.
export ATEN_CPU_CAPABILITY="${ATEN_CPU_CAPABILITY:-avx2}" MKL_CBWR="${MKL_CBWR:-AVX2}"
export MKL_ENABLE_INSTRUCTIONS="${MKL_ENABLE_INSTRUCTIONS:-AVX2}"
