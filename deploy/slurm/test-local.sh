#!/usr/bin/env bash
# Runs deploy/slurm/shardtrain.sbatch on a real one-node Slurm cluster started here: munged, slurmctld and slurmd on
# localhost with a minimal configuration in a temporary folder (installing slurm-wlm and munge with apt-get when
# missing). Three tasks train examples/spirals.yaml for EPOCHS (20) epochs; the weights must have the SHA-256 of the
# in-process run. Stops only the daemons it started. Needs root; says so and exits 0 where it cannot run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
shardtrain="${SHARDTRAIN:-$root/.build/release/shardtrain}"

if [ "$(id -u)" -ne 0 ]; then echo "slurm test: skipped (needs root to run slurmd)"; exit 0; fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "slurm test: installing slurm-wlm munge" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
[ -x "$shardtrain" ] || swift build --package-path "$root" -c release --product shardtrain >&2

work="$(mktemp -d /tmp/shardtrain-slurm.XXXXXX)"
chmod 700 "$work"
stop() {
  for daemon in slurmd slurmctld munged; do
    if [ -f "$work/$daemon.pid" ]; then kill "$(cat "$work/$daemon.pid")" 2>/dev/null || true; fi
  done
  sleep 1
  for daemon in slurmd slurmctld munged; do
    if [ -f "$work/$daemon.pid" ]; then kill -9 "$(cat "$work/$daemon.pid")" 2>/dev/null || true; fi
  done
  rm -rf "$work"
}
trap stop EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
host="$(hostname)"
mkdir -p "$work/state" "$work/spool" "$work/run"
dd if=/dev/urandom of="$work/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge.key"
munged --force --key-file="$work/munge.key" --socket="$work/munge.sock" --pid-file="$work/munged.pid" \
  --log-file="$work/munged.log" --seed-file="$work/munge.seed"
cat > "$work/slurm.conf" <<CONF
ClusterName=shardtrain-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
AuthInfo=socket=$work/munge.sock
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
export SLURM_CONF="$work/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 1 100); do
  state="$(sinfo -h -o %t 2>/dev/null || true)"
  [ "$state" = "idle" ] && break
  sleep 0.2
done
[ "$state" = "idle" ] || { echo "slurm test: the node did not come up (state '$state')"; tail -5 "$work"/*.log; exit 1; }

job="$root/examples/spirals.yaml"
epochs="${EPOCHS:-20}"
"$shardtrain" train --config "$job" --epochs "$epochs" --save "$work/reference.st" >/dev/null
cd "$work"
JOB="$job" SHARDTRAIN="$shardtrain" CHECKPOINTS="$work/checkpoints" SAVE="$work/slurm.st" \
  sbatch --wait --nodes=1 --ntasks=3 --overcommit --output="$work/job.out" "$root/deploy/slurm/shardtrain.sbatch" \
  --epochs "$epochs" >/dev/null || { echo "slurm test: the job failed"; cat "$work/job.out"; exit 1; }
want="$(sha256sum < "$work/reference.st")"
got="$(sha256sum < "$work/slurm.st" 2>/dev/null || echo none)"
grep -q "launch: rank 0 of 3 (Slurm variables): coordinator on" "$work/job.out" \
  || { echo "slurm test: rank 0 did not coordinate"; cat "$work/job.out"; exit 1; }
# The script made the run's key in the submit folder, and the coordinator admitted its holders only.
[ "$(stat -c %a "$work/shardtrain-run.key")" = 600 ] && grep -q "(CurveZMQ, key" "$work/job.out" \
  || { echo "slurm test: the run was not keyed"; cat "$work/job.out"; exit 1; }
[ "$want" = "$got" ] || { echo "slurm test: weights differ from the in-process run"; cat "$work/job.out"; exit 1; }
ls "$work/checkpoints"/checkpoint-*.safetensors >/dev/null
echo "slurm test: 3 tasks under sbatch, CurveZMQ with the key it made, gave the in-process run's SHA-256 ${want%% *}"
