#!/usr/bin/env bash
# Runs the suites that start processes (or the `swift test --filter` given) N times in a row with every core busy,
# stopping at the first failure: `scripts/test-repeat.sh 10 [FILTER]`. What a landing must pass before it lands.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
times="${1:-10}"
filter="${2:-EndToEndTests}"
[[ "$times" =~ ^[1-9][0-9]*$ ]] || { echo "usage: scripts/test-repeat.sh [TIMES] [FILTER] (TIMES: a whole number ≥ 1, got '$times')" >&2; exit 2; }
"$root/scripts/setup.sh"
cd "$root"
swift build --build-tests
# shellcheck source=scripts/test-support.sh
source "$root/scripts/test-support.sh"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/shardtrain-repeat.XXXXXX")"
trap 'stop_cpu_hog; rm -rf "$scratch"' EXIT
start_cpu_hog
for run in $(seq "$times"); do
  mkdir -p "$scratch/tmp"
  status=0
  TMPDIR="$scratch/tmp" swift test --skip-build --disable-xctest --filter "$filter" > "$scratch/run.log" 2>&1 || status=$?
  echo "run $run of $times: $(swift_test_counts "$scratch/run.log")"
  if [ "$status" -ne 0 ]; then
    grep -E '^✘' "$scratch/run.log" | head -20
    cp "$scratch/run.log" "${TMPDIR:-/tmp}/shardtrain-repeat-failed.log"
    # The failed run's process logs too (each test's folder), for finding out what happened.
    rm -rf "${TMPDIR:-/tmp}/shardtrain-repeat-failed.d"
    mv "$scratch/tmp" "${TMPDIR:-/tmp}/shardtrain-repeat-failed.d"
    echo "failed on run $run of $times under load (log: ${TMPDIR:-/tmp}/shardtrain-repeat-failed.log; the processes' logs:" \
      "${TMPDIR:-/tmp}/shardtrain-repeat-failed.d)"
    exit 1
  fi
  rm -rf "$scratch/tmp"
done
echo "passed $times times in a row under load ($filter)"
