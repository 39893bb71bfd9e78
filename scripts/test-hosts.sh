#!/usr/bin/env bash
# Several hosts on one machine: network namespaces joined by veth pairs to a bridge (10.88.<n>.0/24). A coordinator
# host and three worker hosts over real TCP with CurveZMQ: two authorised workers train; on the third host a worker
# with an unlisted key and a plaintext one are refused and named; the saved weights' SHA-256 must equal the
# in-process run's (whole steps: --overlap off, so the star). Then a model of four to six parts, where --overlap's and
# --layout's defaults turn on across hosts: results in parts, summed by their owners among the workers, the same
# SHA-256 as in-process.
# Last, a worker host whose link goes down for 8 s mid-run and comes back: the worker is lost, says hello again when
# the link returns, rejoins, and the run ends with the in-process SHA-256 (--min-workers 2 holds the run until it has).
# Then the sharded layout (--layout sharded) with three workers over CurveZMQ, the host of a worker and owner cut off
# mid-run: its parts move, the step is computed again, and the run ends with the in-process SHA-256.
# Needs root and `ip netns`; skips with a message otherwise. Removes every namespace it made and every process it started, whatever
# happens.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shardtrain="${SHARDTRAIN:-$root/.build/debug/shardtrain}"
say() { echo "multi-host test: $*" >&2; }

if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null; then say "skipped: needs root and iproute2's ip"; exit 0; fi
tag="st$$"
net="10.88.$(( $$ % 200 + 20 ))"
probe="${tag}probe"
if ! ip netns add "$probe" 2>/dev/null; then say "skipped: ip netns is not permitted here"; exit 0; fi
ip netns del "$probe"

work="$(mktemp -d)"
hosts=(coord w1 w2 w3)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for host in "${hosts[@]}"; do ip netns del "$tag-$host" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# The coordinator's namespace holds the bridge; each host gets a veth pair with one end on the bridge.
for host in "${hosts[@]}"; do ip netns add "$tag-$host"; done
on() { local host="$1"; shift; ip netns exec "$tag-$host" "$@"; }
on coord ip link set lo up
on coord ip link add br0 type bridge
on coord ip addr add "$net.1/24" dev br0
on coord ip link set br0 up
number=10
for host in w1 w2 w3; do
  number=$((number + 1))
  ip link add "$tag$host" type veth peer name "${tag}b$host"
  ip link set "$tag$host" netns "$tag-$host"
  ip link set "${tag}b$host" netns "$tag-coord"
  on coord ip link set "${tag}b$host" master br0 up
  on "$host" ip link set lo up
  on "$host" ip addr add "$net.$number/24" dev "$tag$host"
  on "$host" ip link set "$tag$host" up
done

cat > "$work/job.yaml" <<'JOB'
model: {layers: [{units: 32, activation: relu}, {units: 3, activation: softmax}]}
loss: cross_entropy
optimizer: {name: adam, lr: 0.002}
batch_size: 64
micro_shard: 8
epochs: 8
seed: 5
data: {builtin: blobs, samples: 1200, classes: 3, features: 16, noise: 2.0}
JOB
"$shardtrain" train --config "$work/job.yaml" --threads 1 --save "$work/reference.st" >/dev/null
mkdir "$work/authorized"
for name in coordinator alpha beta gamma stranger; do "$shardtrain" keygen --output "$work/$name" >/dev/null; done
cp "$work/alpha.pub" "$work/beta.pub" "$work/authorized/"

endpoint="tcp://$net.1:5555"
on coord "$shardtrain" coordinator --config "$work/job.yaml" --bind "$endpoint" --workers 2 --heartbeat 0.5 --overlap off \
  --key "$work/coordinator.key" --authorized "$work/authorized" --save "$work/out.st" > "$work/coordinator.out" 2> "$work/coordinator.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "waiting for 2 workers" "$work/coordinator.log" && break; sleep 0.1; done

fail() { say "FAILED: $*"; for f in "$work"/*.log; do echo "--- $f"; tail -20 "$f"; done >&2; exit 1; }
# Refused first, so the run cannot finish before they have tried.
status=0
on w3 "$shardtrain" worker --connect "$endpoint" --name stranger --key "$work/stranger.key" \
  --coordinator-key "$work/coordinator.pub" --idle-timeout 30 2> "$work/stranger.log" || status=$?
[ "$status" -eq 4 ] && grep -q "refused this worker's key" "$work/stranger.log" || fail "the unlisted key was not refused"
status=0
on w3 "$shardtrain" worker --connect "$endpoint" --name plain --insecure --idle-timeout 30 2> "$work/plain.log" || status=$?
[ "$status" -eq 4 ] && grep -q "requires CurveZMQ keys" "$work/plain.log" || fail "the plaintext worker was not refused"

# Starts the authorised workers alpha (on w1) and beta (on w2), logging to PREFIXalpha.log and PREFIXbeta.log, trying
# to reach the coordinator for IDLE seconds (default 30).
start_authorised() {
  local prefix="$1" idle="${2:-30}" name host
  for name in alpha beta; do
    host=w1; [ "$name" = beta ] && host=w2
    on "$host" "$shardtrain" worker --connect "$endpoint" --name "$name" --key "$work/$name.key" \
      --coordinator-key "$work/coordinator.pub" --idle-timeout "$idle" 2> "$work/$prefix$name.log" &
    pids+=($!)
  done
}
# Waits for the coordinator (the first of pids) and the workers; each must exit 0.
wait_for_run() {
  wait "${pids[0]}" || fail "the coordinator ($1) exited with status $?"
  for pid in "${pids[@]:1}"; do wait "$pid" || fail "a worker ($1) exited with status $?"; done
}
run_authorised() {
  start_authorised "$1"
  wait_for_run "$1"
}
# Cuts w1's link for 8 s once the run logging to LOG has reached step STEP (WHAT names the run if it never does).
cut_w1_at_step() {
  local step="$1" log="$2" what="$3"
  for _ in $(seq 1200); do grep -q "^step $step:" "$log" && break; sleep 0.1; done
  grep -q "^step $step:" "$log" || fail "the run $what did not reach step $step"
  on w1 ip link set "${tag}w1" down
  sleep 8  # the outage itself: how long the link is down, not a wait for something to happen
  on w1 ip link set "${tag}w1" up
}
# Sets `actual` to OUT's SHA-256 and fails unless it is REFERENCE's (WHAT says how OUT was trained).
expect_reference_bits() {
  local expected
  expected="$(sha256sum < "$1" | cut -d' ' -f1)"
  actual="$(sha256sum < "$2" | cut -d' ' -f1)"
  [ "$expected" = "$actual" ] || fail "SHA-256 $actual $3, $expected in-process"
}
run_authorised ""

stranger_key="$(cat "$work/stranger.pub")"
grep -qF "refused a worker at $net.13: key $stranger_key" "$work/coordinator.log" || fail "the coordinator did not name the unlisted key"
# libzmq closes a plaintext connection microseconds after accepting it, so its address is named only when the
# coordinator read it first; a refusal must be logged, and a host it names must be the plaintext worker's. Its reason
# is the failed handshake or the closed connection, whichever the coordinator read first (both are right).
grep -Eq "^refused a connection( from ${net//./\\.}\.13:[0-9]+)?: it (does not use CurveZMQ keys|closed the connection during the handshake)" "$work/coordinator.log" \
  || fail "the coordinator did not log the plaintext peer's refusal, or named another host"
grep -q "\"alpha\" (.*) joined" "$work/coordinator.log" && grep -q "\"beta\" (.*) joined" "$work/coordinator.log" \
  || fail "the authorised workers did not join"
expect_reference_bits "$work/reference.st" "$work/out.st" "over CurveZMQ"
say "4 hosts ($net.0/24): 2 authorised workers gave the in-process run's SHA-256 $actual; an unlisted key (named) and a plaintext worker were refused"

# Across hosts --overlap is on by default: a model of 200,835 parameters (six parts over 2 workers and the
# coordinator, four over 3), four micro-shards a worker (their sum's limbs go packed, part by part).
cat > "$work/parts.yaml" <<'JOB'
model: {layers: [{units: 4096, activation: relu}, {units: 32, activation: relu}, {units: 3, activation: softmax}]}
loss: cross_entropy
optimizer: {name: adam, lr: 0.001}
batch_size: 64
micro_shard: 8
epochs: 2
seed: 6
data: {builtin: blobs, samples: 640, classes: 3, features: 16, noise: 2.0}
JOB
"$shardtrain" train --config "$work/parts.yaml" --threads 1 --save "$work/parts-reference.st" >/dev/null
on coord "$shardtrain" coordinator --config "$work/parts.yaml" --bind "$endpoint" --workers 2 --heartbeat 0.5 --verbose \
  --key "$work/coordinator.key" --authorized "$work/authorized" --save "$work/parts.st" --trace "$work/parts-trace.json" \
  > /dev/null 2> "$work/parts-coordinator.log" &
pids=($!)
run_authorised parts-
grep -q "results and weights go in parts (--overlap)" "$work/parts-coordinator.log" || fail "--overlap was not on across hosts"
grep -q "the sum is sharded: 6 parts over 3 owners" "$work/parts-coordinator.log" \
  || fail "--layout auto did not shard the sum across hosts"
expect_reference_bits "$work/parts-reference.st" "$work/parts.st" "in parts across hosts"
# The trace: each worker's row holds, every step, its layers' spans and each part it sent to the part's owner.
python3 - "$work/parts-trace.json" <<'PY' || fail "the sharded run's --trace lacks a worker's layers or parts"
import collections, json, sys
spans = [e for e in json.load(open(sys.argv[1])) if e["ph"] == "X" and e["pid"] != 0]
seen = collections.defaultdict(set)
for e in spans:
    seen[(e["pid"], e["args"]["step"])].add(e["name"])
need = {"forward layer 1", "backward layer 3", "send part 0", "send part 3", "compute", "result out"}
assert len({pid for pid, _ in seen}) == 2 and len(seen) == 2 * 20, sorted(seen)
missing = {key: need - names for key, names in seen.items() if not need <= names}
assert not missing, missing
PY
say "results in parts and the sum sharded over the workers (--overlap and --layout auto across hosts): the in-process run's SHA-256 $actual; --trace shows each worker's layers and parts"

# libzmq binds a host that names an interface to that interface: one called `localhost` is not loopback, so a
# plaintext coordinator must be refused there as on any reachable address.
on w3 ip link add localhost type veth peer name "${tag}lp"
on w3 ip addr add 10.99.0.1/24 dev localhost
on w3 ip link set localhost up
status=0
on w3 "$shardtrain" coordinator --config "$work/job.yaml" --bind tcp://localhost:5599 --workers 1 --join-timeout 1 \
  > /dev/null 2> "$work/interface-bind.log" || status=$?
[ "$status" -eq 2 ] && grep -q -- "--insecure" "$work/interface-bind.log" \
  || fail "a plaintext bind to an interface named localhost was not refused (status $status)"
say "a plaintext bind to an interface named localhost is refused, as libzmq would listen on that interface"

# A worker's link down for 8 s (longer than the 1.5 s a silent worker is given) and back: with --min-workers 2 the
# run waits for it, so it must rejoin — its hellos must be whole after the outage — and the bits must not change.
# The job above, five times as long.
sed 's/^epochs: 8$/epochs: 40/' "$work/job.yaml" > "$work/blip.yaml"
"$shardtrain" train --config "$work/blip.yaml" --threads 1 --save "$work/blip-reference.st" >/dev/null
on coord "$shardtrain" coordinator --config "$work/blip.yaml" --bind "$endpoint" --workers 2 --min-workers 2 \
  --heartbeat 0.5 --rejoin-timeout 120 --verbose --key "$work/coordinator.key" --authorized "$work/authorized" \
  --save "$work/blip.st" > /dev/null 2> "$work/blip-coordinator.log" &
pids=($!)
start_authorised blip- 120
cut_w1_at_step 30 "$work/blip-coordinator.log" "with a link outage"
wait_for_run "with a link outage"
grep -q "\"alpha\" (.*) lost: " "$work/blip-coordinator.log" || fail "the cut-off worker was not lost"
[ "$(grep -c "\"alpha\" (.*) joined" "$work/blip-coordinator.log")" -ge 2 ] || fail "the cut-off worker did not rejoin"
! grep -q "malformed" "$work/blip-coordinator.log" || fail "the rejoining worker's messages were malformed"
expect_reference_bits "$work/blip-reference.st" "$work/blip.st" "after a link outage"
say "a worker's link down for 8 s: lost, rejoined when it came back, and the in-process run's SHA-256 $actual"

# The sharded layout across hosts: three workers own the four parts of the model above; the host of one (w1) loses its
# link mid-run: its parts move to the other two and the step is computed again; --min-workers 3 holds the run until
# it rejoins (as a new member: the next step sends it the weights and optimizer state), and the run ends with the
# in-process run's bits.
cp "$work/gamma.pub" "$work/authorized/"
sed 's/^epochs: 2$/epochs: 8/' "$work/parts.yaml" > "$work/sharded.yaml"
"$shardtrain" train --config "$work/sharded.yaml" --threads 1 --save "$work/sharded-reference.st" >/dev/null
on coord "$shardtrain" coordinator --config "$work/sharded.yaml" --bind "$endpoint" --workers 3 --min-workers 3 --rejoin-timeout 120 \
  --layout sharded --heartbeat 0.5 --verbose --key "$work/coordinator.key" --authorized "$work/authorized" \
  --save "$work/sharded.st" > /dev/null 2> "$work/sharded-coordinator.log" &
pids=($!)
start_authorised sharded- 60
on w3 "$shardtrain" worker --connect "$endpoint" --name gamma --key "$work/gamma.key" \
  --coordinator-key "$work/coordinator.pub" --idle-timeout 60 2> "$work/sharded-gamma.log" &
pids+=($!)
cut_w1_at_step 15 "$work/sharded-coordinator.log" "sharded, with a host cut off"
wait_for_run "sharded, a host cut off"
grep -q "4 parts over 4 owners" "$work/sharded-coordinator.log" || fail "the sharded layout did not spread the parts"
grep -q "\"alpha\" (.*) lost: " "$work/sharded-coordinator.log" || fail "the cut-off owner was not lost"
grep -q "of the sum moved to" "$work/sharded-coordinator.log" || fail "the cut-off owner's parts did not move"
expect_reference_bits "$work/sharded-reference.st" "$work/sharded.st" "in the sharded layout with a host cut off"
say "sharded layout over 3 hosts, one cut off mid-run: its parts moved, and the in-process run's SHA-256 $actual"
