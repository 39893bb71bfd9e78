#!/usr/bin/env python3
"""Runs the scaling benchmark (called by scripts/bench-scaling.sh): shardtrain with 1 and 2 worker processes on
mnist-mlp at global batches 256, 512 and 1024, exact and fast, SGD momentum and Adam, with the coordinator's per-step
time split; PyTorch DDP (gloo, torchrun) at the same world sizes and batches; and the coordinator's round trip on the
seed's XOR network. Prints a table and writes JSON."""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".build", "release", "shardtrain")
HERE = os.path.dirname(os.path.abspath(__file__))

JOB = """model:
  inputs: 784
  layers:
    - {{units: 512, activation: relu}}
    - {{units: 256, activation: relu}}
    - {{units: 10, activation: softmax}}
loss: cross_entropy
optimizer: {optimizer}
batch_size: {batch}
steps: {steps}
micro_shard: 128
reduction: {reduction}
seed: 3
data: {{features: x.npy, targets: y.npy}}
"""


_written = set()


def write_data(folder, samples):
    """JOB's data, beside it: `samples` rows of features uniform in [-1, 1) and uniform class labels, the distribution
    torch_ddp.py and torch_mlp.py train on. Data a network can fit (separable blobs) drives its gradients to subnormal
    numbers within a few steps, which an Intel Xeon multiplied several times slower: both sides must train on the
    same kind of data for a ratio to mean anything. Written once per folder and sample count."""
    import array
    import random
    if (folder, samples) in _written:
        return
    _written.add((folder, samples))
    generator = random.Random(3)
    features = array.array("f", (generator.random() * 2 - 1 for _ in range(samples * 784)))
    labels = array.array("q", (generator.randrange(10) for _ in range(samples)))
    for name, descr, shape, values in (("x.npy", "<f4", f"({samples}, 784)", features),
                                       ("y.npy", "<i8", f"({samples},)", labels)):
        header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
        header += " " * (63 - (10 + len(header)) % 64) + "\n"  # the magic, version and length take 10 bytes
        with open(os.path.join(folder, name), "wb") as f:
            f.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + values.tobytes())


def shardtrain(workers, batch, optimizer, reduction, steps, folder):
    opt = "{name: sgd, lr: 0.01, momentum: 0.9}" if optimizer == "sgd" else "{name: adam, lr: 0.001}"
    job = os.path.join(folder, "job.yaml")
    with open(job, "w") as f:
        f.write(JOB.format(optimizer=opt, batch=batch, steps=steps, reduction=reduction))
    write_data(folder, batch * 4)
    metrics = os.path.join(folder, "metrics.jsonl")
    command = [BIN, "train", "--config", job, "--metrics", metrics, "--threads", "1", "--verbose",
               "--workers", str(workers), "--log-every", "1000000"]
    run = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    if run.returncode != 0:
        raise RuntimeError(run.stderr)
    rates = [json.loads(line)["samples_per_second"] for line in open(metrics)][1:]  # first epoch warms up
    timings = [tuple(float(v) for v in m) for m in
               re.findall(r"send ([\d.]+) ms, wait ([\d.]+) ms, reduce ([\d.]+) ms", run.stderr)][steps // 4:]
    row = {"samples_per_second": statistics.median(rates)}
    if timings:
        step_ms = batch / row["samples_per_second"] * 1000
        send, wait, reduce = (statistics.median(t[i] for t in timings) for i in range(3))
        row.update(step_ms=step_ms, send_ms=send, wait_ms=wait, reduce_ms=reduce,
                   coordinator_other_ms=max(0.0, step_ms - send - wait - reduce))
    return row


def ddp(world, batch, optimizer, steps):
    """DDP samples/s at a world size; torchrun's gloo teardown sometimes aborts after rank 0 has printed, so the
    printed figure counts, and a run that printed nothing is tried again (three times at most)."""
    if shutil.which("torchrun") is None:
        return None
    for _ in range(3):
        # torchrun leaves its torchelastic_* folders in TMPDIR: one removed after each run.
        with tempfile.TemporaryDirectory() as scratch:
            run = subprocess.run(["torchrun", "--standalone", f"--nproc_per_node={world}",
                                  os.path.join(HERE, "torch_ddp.py"), "--batch", str(batch), "--optimizer", optimizer,
                                  "--steps", str(steps)],
                                 capture_output=True, text=True,
                                 env=dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=scratch))
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        if lines:
            return json.loads(lines[-1])["samples_per_second"]
    return None


def xor_round_trip(folder):
    """Per-step coordinator overhead: the seed's XOR network with one worker, µs per step."""
    job = os.path.join(ROOT, "examples", "xor.yaml")
    metrics = os.path.join(folder, "xor.jsonl")
    run = subprocess.run([BIN, "train", "--config", job, "--workers", "1", "--threads", "1", "--metrics", metrics,
                          "--epochs", "3000"], capture_output=True, text=True,
                         env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    if run.returncode != 0:
        raise RuntimeError(run.stderr)
    rates = [json.loads(line)["samples_per_second"] for line in open(metrics)][100:]
    return 4 / statistics.median(rates) * 1e6


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--json", metavar="PATH", help="write the figures here as JSON (the committed ones are "
                   "scripts/bench/scaling-results.json; nothing is written without this flag)")
    p.add_argument("--batches", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--optimizers", nargs="+", default=["sgd", "adam"], choices=["sgd", "adam"])
    p.add_argument("--repeats", type=int, default=3, help="interleaved runs of each configuration (the median is kept)")
    a = p.parse_args()
    batches, optimizers, reductions, steps, repeats = a.batches, a.optimizers, ["exact", "fast"], 40, a.repeats
    if a.smoke:
        batches, optimizers, reductions, steps, repeats = [256], ["sgd"], ["exact"], 8, 1
    has_torch = not a.smoke and subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'batch':>5} {'opt':>4} {'mode':>5} | {'1 worker':>8} {'2 workers':>9} {'2/1':>5} | {'DDP 1':>7} "
              f"{'DDP 2':>7} {'2w/DDP2':>7} | 2 workers, ms per step: send wait reduce other")
        for batch in batches:
            for optimizer in optimizers:
                # Interleaved repeats, the median kept: these machines are shared and noisy. DDP runs between
                # shardtrain's runs, so both see the same stretch of the machine.
                runs = {(r, w): [] for r in reductions for w in (1, 2)}
                ddp_runs = {1: [], 2: []}
                for _ in range(repeats):
                    for workers in (1, 2):
                        if has_torch:
                            ddp_runs[workers].append(ddp(workers, batch, optimizer, steps))
                        for reduction in reductions:
                            runs[(reduction, workers)].append(
                                shardtrain(workers, batch, optimizer, reduction, steps, folder))
                peers = {w: statistics.median([v for v in ddp_runs[w] if v] or [0]) or None for w in (1, 2)}
                for reduction in reductions:
                    runs_of = {w: runs[(reduction, w)] for w in (1, 2)}
                    one, two = (sorted(runs_of[w], key=lambda r: r["samples_per_second"])[len(runs_of[w]) // 2]
                                for w in (1, 2))
                    row = {"batch": batch, "optimizer": optimizer, "reduction": reduction, "workers_1": one,
                           "workers_2": two, "ddp_1": peers[1], "ddp_2": peers[2]}
                    rows.append(row)
                    fmt = lambda v: f"{v:7.0f}" if v else "    n/a"
                    ratio = f"{two['samples_per_second'] / peers[2]:7.2f}" if peers[2] else "    n/a"
                    print(f"{batch:>5} {optimizer:>4} {reduction:>5} | {one['samples_per_second']:8.0f} "
                          f"{two['samples_per_second']:9.0f} {two['samples_per_second'] / one['samples_per_second']:5.2f} | "
                          f"{fmt(peers[1])} {fmt(peers[2])} {ratio} | {two.get('send_ms', 0):.2f} "
                          f"{two.get('wait_ms', 0):.2f} {two.get('reduce_ms', 0):.2f} {two.get('coordinator_other_ms', 0):.2f}",
                          flush=True)
        xor = xor_round_trip(folder)
        print(f"XOR, 1 worker: {xor:.1f} µs per step, coordinator round trip included")
    if a.json and not a.smoke:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "xor_us_per_step": xor}, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
