#!/usr/bin/env bash
# Failure-survival benchmark: the cost of heartbeats and checkpoints, a checkpoint's size and write time, and the time
# from a worker's SIGKILL to the step completing on the survivors. `--smoke`: one short repeat of each.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
swift build --package-path "$root" -c release --product shardtrain >&2
exec python3 "$root/scripts/bench/failures.py" "$@"
