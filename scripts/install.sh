#!/usr/bin/env bash
# Builds shardtrain in release mode with the Swift runtime linked in, and installs the binary as PREFIX/bin/shardtrain
# (default PREFIX: /usr/local). The binary then needs only Debian's libraries, which scripts/setup.sh installs:
# copy it to each worker machine's PATH and run scripts/setup.sh there (or apt-get install libopenblas0 libzmq5
# libdnnl2 libgomp1). Usage: scripts/install.sh [PREFIX]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${1:-/usr/local}"
case "$prefix" in
  /*) ;;
  *) echo "install: PREFIX must be an absolute path, got '$prefix'" >&2; exit 2 ;;
esac
"$root/scripts/setup.sh"
# Its own build folder: the static runtime changes every object, and the release build of scripts/shardtrain stays.
swift build --package-path "$root" --scratch-path "$root/.build-install" -c release --product shardtrain \
  --static-swift-stdlib >&2
mkdir -p "$prefix/bin"
install -m 0755 "$root/.build-install/release/shardtrain" "$prefix/bin/shardtrain"
echo "installed $prefix/bin/shardtrain ($("$prefix/bin/shardtrain" --version))"
