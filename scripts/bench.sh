#!/usr/bin/env bash
# Engine benchmark: builds in release mode and prints one table (samples/s on mnist-mlp and a wider net for
# shardtrain exact and fast, PyTorch CPU, the sgemm limit and, on one thread, a step's floor; the seed's XOR against
# its numpy program), with OpenBLAS as this machine sets it and with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset.
# `--smoke` runs a few steps of one configuration only.
# PyTorch: pip install torch==2.13.0+cpu (without it the torch column says n/a).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
swift build --package-path "$root" -c release --product shardtrain-bench >&2
exec python3 "$root/scripts/bench/run.py" "$@"
