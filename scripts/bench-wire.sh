#!/usr/bin/env bash
# Wire benchmark: weights out and gradients back (2,143,272 bytes each way: mnist-mlp's gradient) between
# processes, over tcp and ipc, to 1 and 2 workers, through shardtrain's Wire (protocol messages, checked on
# receipt) and through a minimal raw-libzmq C program doing the same, in the same run; and over tcp with CurveZMQ
# against plaintext, the cost of a keyed coordinator; and the packed form of exact results (bytes per parameter, ns to
# pack and unpack) on real sums. `--smoke`: a few iterations.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
swift build --package-path "$root" -c release --product shardtrain-bench >&2
swift build --package-path "$root" -c release --product shardtrain >&2
raw="$(mktemp -d)/zmq_raw"
cc -O2 -o "$raw" "$root/scripts/bench/zmq_raw.c" $(pkg-config --cflags --libs libzmq)
iterations=200
[ "${1:-}" = "--smoke" ] && iterations=20
bench="$root/.build/release/shardtrain-bench"
# The processes link OpenBLAS but do no algebra here: keep its idle thread pool from competing for the two cores.
export OPENBLAS_NUM_THREADS=1
repeats=3
[ "${1:-}" = "--smoke" ] && repeats=1
results="$(mktemp)"
# The ipc runs' socket files stay behind when a process ends before libzmq closes its listener.
trap 'rm -rf "$results" "$(dirname "$raw")" "/tmp/shardtrain-bench-wire-$$" "/tmp/shardtrain-bench-raw-$$"' EXIT
for transport in tcp ipc; do
  for workers in 1 2; do
    if [ "$transport" = tcp ]; then e1="tcp://127.0.0.1:5601"; e2="tcp://127.0.0.1:5602"
    else e1="ipc:///tmp/shardtrain-bench-wire-$$"; e2="ipc:///tmp/shardtrain-bench-raw-$$"; fi
    for _ in $(seq "$repeats"); do  # interleaved, so both see the same machine load
      "$bench" wire --endpoint "$e1" --workers "$workers" --iterations "$iterations" | sed "s/^/$transport $workers /" >> "$results"
      "$raw" "$e2" "$workers" 2143272 "$iterations" | sed "s/^/$transport $workers /" >> "$results"
      if [ "$transport" = tcp ]; then  # what a keyed coordinator pays: CurveZMQ authentication and encryption
        "$bench" wire --endpoint "tcp://127.0.0.1:5603" --workers "$workers" --iterations "$iterations" --curve \
          | sed "s/^/$transport $workers /" >> "$results"
      fi
    done
  done
done
python3 - "$results" <<'PY'
import collections, json, statistics, sys
rows = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    transport, workers, text = line.split(" ", 2)
    result = json.loads(text)
    rows[(transport, workers)][result["implementation"]].append(result["median_ms"])
print("Wire vs raw libzmq, 2,143,272 bytes each way, median ms over iterations, median of interleaved repeats")
print(f"{'pattern':<28} {'workers':>7} {'wire ms':>9} {'raw ms':>9} {'ratio':>6}")
for (transport, workers), by in rows.items():
    wire, raw = statistics.median(by["wire"]), statistics.median(by["raw libzmq (C)"])
    label = f"{transport} {'round trip' if workers == '1' else 'coordinator pattern'}"
    print(f"{label:<28} {workers:>7} {wire:>9.3f} {raw:>9.3f} {wire / raw:>6.2f}")
print()
print("CurveZMQ (libsodium) vs plaintext, the same messages through Wire over tcp")
print(f"{'pattern':<28} {'workers':>7} {'curve ms':>9} {'plain ms':>9} {'ratio':>6} {'MB/s':>7}")
for (transport, workers), by in rows.items():
    if "wire curve" not in by:
        continue
    curve, plain = statistics.median(by["wire curve"]), statistics.median(by["wire"])
    label = f"{transport} {'round trip' if workers == '1' else 'coordinator pattern'}"
    rate = 2 * 2143272 * int(workers) / curve / 1000  # bytes encrypted and decrypted each way, per ms -> MB/s
    print(f"{label:<28} {workers:>7} {curve:>9.3f} {plain:>9.3f} {curve / plain:>6.2f} {rate:>7.0f}")
PY
echo
echo "Packed exact results: a worker's sum of 4 micro-shards, at steps of an SGD run (shardtrain-bench packing)"
for model in "mnist-mlp --micro-shard 128" "mnist-wide --micro-shard 16"; do
  # shellcheck disable=SC2086  # the model and its flags, split on purpose
  "$bench" packing --model $model ${1:+--at 1 --at 4}
done
echo
python3 "$root/scripts/bench/keyed_training.py" ${1:+"$1"}
