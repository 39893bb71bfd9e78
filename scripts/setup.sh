#!/usr/bin/env bash
# Installs the Debian packages shardtrain builds against, when they are missing: pkg-config, OpenBLAS, ZeroMQ,
# oneDNN (the default GEMM library; it has no pkg-config file, so its header stands for it).
set -euo pipefail
if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openblas libzmq 2>/dev/null \
   && [ -f /usr/include/dnnl.h ]; then
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "setup: installing pkg-config libopenblas-dev libzmq3-dev libdnnl-dev" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq pkg-config libopenblas-dev libzmq3-dev libdnnl-dev >/dev/null
