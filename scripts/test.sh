#!/usr/bin/env bash
# Sets up and runs the whole test suite (unit and end-to-end).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
swift build --build-tests
swift test --skip-build "$@"
