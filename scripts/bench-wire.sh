#!/usr/bin/env bash
# Wire benchmark: weights out and gradients back (2,143,272 bytes each way: mnist-mlp's gradient) between
# processes, over tcp and ipc, to 1 and 2 workers, through shardtrain's Wire (protocol messages, checked on
# receipt) and through a minimal raw-libzmq C program doing the same, in the same run. `--smoke`: a few iterations.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
swift build --package-path "$root" -c release --product shardtrain-bench >&2
raw="$(mktemp -d)/zmq_raw"
cc -O2 -o "$raw" "$root/scripts/bench/zmq_raw.c" $(pkg-config --cflags --libs libzmq)
iterations=200
[ "${1:-}" = "--smoke" ] && iterations=20
bench="$root/.build/release/shardtrain-bench"
printf '%-28s %8s %10s %10s %8s\n' "pattern" "workers" "wire ms" "raw ms" "ratio"
for transport in tcp ipc; do
  for workers in 1 2; do
    if [ "$transport" = tcp ]; then e1="tcp://127.0.0.1:5601"; e2="tcp://127.0.0.1:5602"
    else e1="ipc:///tmp/shardtrain-bench-wire-$$"; e2="ipc:///tmp/shardtrain-bench-raw-$$"; fi
    w=$("$bench" wire --endpoint "$e1" --workers "$workers" --iterations "$iterations")
    r=$("$raw" "$e2" "$workers" 2143272 "$iterations")
    python3 - "$transport" "$workers" "$w" "$r" <<'PY'
import json, sys
transport, workers, wire, raw = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
label = f"{transport} {'round trip' if workers == '1' else 'coordinator pattern'}"
print(f"{label:<28} {workers:>8} {wire['median_ms']:>10.3f} {raw['median_ms']:>10.3f} {wire['median_ms'] / raw['median_ms']:>8.2f}")
PY
  done
done
