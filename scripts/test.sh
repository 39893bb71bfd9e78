#!/usr/bin/env bash
# Sets up and runs the whole test suite (unit and end-to-end, then several hosts in network namespaces and deploy/);
# extra arguments go to `swift test`. The Swift tests run with every core kept busy by a CPU hog, as a shared CI
# machine would be (SHARDTRAIN_TEST_LOAD=0 runs them on an idle machine). Everything the tests write goes to one
# temporary folder, removed at the end. The last line is the verdict.
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
# The --tensorboard and --prometheus tests read what a run writes with TensorBoard's and Prometheus' own readers.
if ! python3 -c "import tensorboard, prometheus_client" >/dev/null 2>&1; then
  echo "test setup: installing tensorboard and prometheus_client (pip)" >&2
  python3 -m pip install -q tensorboard prometheus_client
fi
# shellcheck source=scripts/test-support.sh
source "$root/scripts/test-support.sh"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/shardtrain-test.XXXXXX")"
log="$scratch/swift-test.log"
trap 'stop_cpu_hog; rm -rf "$scratch"' EXIT
export TMPDIR="$scratch/tmp"
mkdir -p "$TMPDIR"

[ "${SHARDTRAIN_TEST_LOAD:-1}" = 0 ] || start_cpu_hog
status=0
swift test --skip-build --disable-xctest "$@" 2>&1 | tee "$log" || status=$?
stop_cpu_hog
counts="$(swift_test_counts "$log")"
# Several hosts in network namespaces, over TCP with CurveZMQ.
hosts=passed
SHARDTRAIN="$root/.build/debug/shardtrain" "$root/scripts/test-hosts.sh" || { status=1; hosts=failed; }
# deploy/: static checks of the Docker, Compose and Kubernetes files, and the sbatch script on a real Slurm cluster.
deploy=passed
SHARDTRAIN="$root/.build/debug/shardtrain" "$root/deploy/test.sh" || { status=1; deploy=failed; }
echo "swift test: ${counts}; hosts: ${hosts}; deploy: ${deploy}$([ "$status" -eq 0 ] && echo " — all passed" || echo " — FAILED")"
exit "$status"
