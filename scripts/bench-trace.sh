#!/usr/bin/env bash
# What --trace costs: shardtrain with two worker processes on mnist-mlp, exact and fast, with and without --trace, and
# PyTorch DDP (gloo, torchrun) with and without torch.profiler, in the same interleaved runs. Prints a table; writes
# nothing tracked (`--output FILE` writes the table there too). `--smoke`: one short repeat.
# PyTorch: pip install torch==2.13.0+cpu (without it the DDP columns say n/a).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
swift build --package-path "$root" -c release --product shardtrain >&2
swift build --package-path "$root" -c release --product shardtrain-bench >&2
exec python3 "$root/scripts/bench/trace_overhead.py" "$@"
