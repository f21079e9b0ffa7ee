#!/usr/bin/env bash
# Runs benchmarks/torch_bench.py fairly against `vlm bench` (see docs/performance.md):
#  - Debian's python3-torch links OpenBLAS through libblas.so.3, whose pthread build keeps its own thread pool
#    that torch.set_num_threads does not control. Putting Debian's openblas-openmp folder first on
#    LD_LIBRARY_PATH makes BLAS share torch's OpenMP pool, so OMP_NUM_THREADS really is the thread count.
#  - The 1-thread run pins every pool to one thread.
# Usage: benchmarks/run_torch.sh [threads: 1|2|both (default both)] [extra torch_bench.py args, e.g. --filter gemm]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py=/usr/bin/python3
omp_dir=/usr/lib/x86_64-linux-gnu/openblas-openmp
which="${1:-both}"; shift || true

run() {
  local t="$1"; shift
  if [ -f "$omp_dir/libblas.so.3" ]; then
    LD_LIBRARY_PATH="$omp_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" OMP_NUM_THREADS="$t" OPENBLAS_NUM_THREADS="$t" \
      MKL_NUM_THREADS="$t" "$py" "$here/torch_bench.py" --threads "$t" "$@"
  else
    echo "warning: $omp_dir missing (apt-get install libopenblas0-openmp); BLAS threads follow OPENBLAS_NUM_THREADS" >&2
    OMP_NUM_THREADS="$t" OPENBLAS_NUM_THREADS="$t" "$py" "$here/torch_bench.py" --threads "$t" "$@"
  fi
}

case "$which" in
  1) run 1 "$@" ;;
  2) run 2 "$@" ;;
  both) run 2 "$@"; run 1 "$@" ;;
  *) echo "usage: $0 [1|2|both] [torch_bench.py args]" >&2; exit 2 ;;
esac
