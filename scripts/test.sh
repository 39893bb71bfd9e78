#!/usr/bin/env bash
# Sets up and runs the whole test suite (unit and end-to-end); extra arguments go to `swift test`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
swift build --build-tests
# The plot test renders SVG to PNG with librsvg, as a viewer would.
if ! command -v rsvg-convert >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "test setup: installing librsvg2-bin" >&2
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq librsvg2-bin >/dev/null
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
swift test --skip-build --disable-xctest "$@" 2>&1 | tee "$log" || status=$?
# One plain closing line with the counts, whatever the runner printed before it.
passed=$(grep -E '^✔ Test .* passed after' "$log" | grep -vc '^✔ Test run ' || true)
failed=$(grep -E '^✘ Test .* failed after' "$log" | grep -vc '^✘ Test run ' || true)
echo "${passed} passed, ${failed} failed"
# Several hosts in network namespaces, over TCP with CurveZMQ.
SHARDTRAIN="$root/.build/debug/shardtrain" "$root/scripts/test-hosts.sh" || status=$?
# deploy/: static checks of the Docker, Compose and Kubernetes files, and the sbatch script on a real Slurm cluster.
SHARDTRAIN="$root/.build/debug/shardtrain" "$root/deploy/test.sh" || status=$?
exit "$status"
