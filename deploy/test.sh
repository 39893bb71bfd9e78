#!/usr/bin/env bash
# Every deploy/ test that can run here: the static checks, then the sbatch script on a real local Slurm cluster.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/test-static.sh"
"$here/slurm/test-local.sh"
