#!/usr/bin/env bash
# GEMM library comparison: sgemm GFLOP/s on one thread on a training step's products, OpenBLAS (as loaded) against
# BLIS and oneDNN's dnnl_sgemm (each loaded with dlopen when installed: apt-get install libblis-dev libdnnl-dev) and
# oneDNN's matmul primitives as fast mode plans them (Sources/CMatmul, compiled in),
# with PyTorch's own GEMMs as the peer when torch is installed. `--repeats N` interleaved runs (default 3); `--smoke`:
# one short run. Builds with the C compiler found (cc, else the Swift toolchain's clang).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
binary="$(mktemp -d)/gemm_libraries"
trap 'rm -rf "$(dirname "$binary")"' EXIT
compiler="$(command -v cc || command -v clang)"
"$compiler" -O2 -Wall -ffp-contract=off -o "$binary" -I "$root/Sources/CMatmul/include" "$root/scripts/bench/gemm_libraries.c" \
  "$root/Sources/CMatmul/matmul.c" -ldnnl -lgomp -ldl
python3 "$root/scripts/bench/gemm_libraries.py" "$binary" "$@"
