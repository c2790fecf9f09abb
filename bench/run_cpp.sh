#!/usr/bin/env bash
# Build and run pyjac's C++ benchmarks (bench/cpp, Google Benchmark) against the same
# OpenBLAS that the Python package links: the one in scipy-openblas32.
#
# Needs cmake, a C++17 compiler with OpenMP, Google Benchmark (Debian/Ubuntu:
# `apt install libbenchmark-dev`) and a Python with scipy-openblas32 (`pip install
# scipy-openblas32`): $PYTHON, else the active virtual environment's python, else python3.
#
# Usage: bench/run_cpp.sh [--build-only] [--threads=N] [Google Benchmark flags]
#   bench/run_cpp.sh                                   every case
#   bench/run_cpp.sh --benchmark_filter='Bptt|Train'   some of them
#   bench/run_cpp.sh --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#   bench/run_cpp.sh --benchmark_out=now.json --benchmark_out_format=json
# The build goes to build/bench (or $PYJAC_BENCH_BUILD_DIR), Release, and is reused.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${PYJAC_BENCH_BUILD_DIR:-$root/build/bench}"
python="${PYTHON:-$(command -v python || command -v python3)}"

build_only=0
args=()
for arg in "$@"; do
  if [[ "$arg" == "--build-only" ]]; then build_only=1; else args+=("$arg"); fi
done

if ! "$python" -c "import scipy_openblas32" 2> /dev/null; then
  echo "run_cpp.sh: $python has no scipy-openblas32; pip install scipy-openblas32" >&2
  exit 1
fi
cmake -S "$root" -B "$build" -DPYJAC_BUILD_BENCH=ON -DPYJAC_BUILD_PYTHON=OFF \
  -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$python" \
  -DPYJAC_WERROR="${PYJAC_WERROR:-OFF}" > /dev/null
cmake --build "$build" --target bench_core --parallel "${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
if [[ $build_only == 1 ]]; then
  # Start it without timing anything: the cases register and the flags parse.
  "$build/bench/bench_core" --benchmark_list_tests=true > /dev/null
  echo "run_cpp.sh: built $build/bench/bench_core"
  exit 0
fi
# The processor's own BLAS kernels: OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE), where the
# environment sets them, hold OpenBLAS to older ones. Unset here, for this run only; the
# kernel in use is printed in the header as openblas_kernel.
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$build/bench/bench_core" ${args[@]+"${args[@]}"}
