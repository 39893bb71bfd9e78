#!/usr/bin/env bash
# Scaling benchmark: shardtrain with 1 and 2 worker processes against PyTorch DDP (gloo, torchrun) on mnist-mlp, and
# the coordinator's per-step overhead on the seed's XOR. `--smoke`: one short configuration.
# `--batches 1024 --optimizers sgd --repeats 5`: fewer configurations, more interleaved runs (DDP included).
# PyTorch: pip install torch==2.13.0+cpu (without it the DDP columns say n/a).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
swift build --package-path "$root" -c release --product shardtrain >&2
exec python3 "$root/scripts/bench/scaling.py" "$@"
