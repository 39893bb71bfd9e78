#!/usr/bin/env bash
# Across machines: a coordinator host and N worker hosts in network namespaces, every host's link (the coordinator's
# too) limited to the same rate (tc's token bucket, both ways); shardtrain over TCP, exact and fast, against PyTorch
# DDP (gloo, one rank per worker host, torchrun), with each run's busiest link counted. `--worker-hosts 2 4 8`,
# `--model mnist-mlp|mnist-wide`, `--per-worker N` (samples per worker host: the global batch grows with N), `--rates 1gbit
# 10gbit none`, `--repeats N`, `--micro-shard N`, `--overlap` (exact and fast also in parts), `--layouts star sharded` (the sharded layout too),
# `--trace FOLDER` (each run's Chrome trace), `--smoke`; `--help`.
# Needs root and `ip netns`; skips with a message otherwise. PyTorch: pip install torch==2.13.0+cpu (without it the
# DDP column says n/a).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
  echo "bench-hosts: skipped: needs root, iproute2's ip and tc" >&2; exit 0
fi
probe="sbprobe$$"
if ! ip netns add "$probe" 2>/dev/null; then echo "bench-hosts: skipped: ip netns is not permitted here" >&2; exit 0; fi
ip netns del "$probe"
"$root/scripts/setup.sh"
swift build --package-path "$root" -c release --product shardtrain >&2
exec python3 "$root/scripts/bench/hosts.py" "$@"
