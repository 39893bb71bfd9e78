#!/usr/bin/env python3
"""What --trace costs (called by scripts/bench-trace.sh): samples per second with two worker processes on mnist-mlp
(784-512-256-10, 64-sample micro-shards, a global batch of 512, SGD momentum), exact and fast, with and without
--trace; PyTorch DDP (gloo, two ranks) at the same batch with and without torch.profiler, the peer's nearest tool.
Each repeat runs every configuration once, in turn, so a slow spell of the machine hits all of them. Prints medians
and the ratio traced / untraced per repeat."""
import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
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
optimizer: {{name: sgd, lr: 0.01, momentum: 0.9}}
batch_size: 512
steps: {steps}
micro_shard: 64
reduction: {reduction}
seed: 3
data: {{builtin: blobs, samples: 2048, classes: 10, features: 784, noise: 1.0}}
"""


def shardtrain(reduction, traced, steps, folder):
    job = os.path.join(folder, f"{reduction}.yaml")
    with open(job, "w") as f:
        f.write(JOB.format(steps=steps, reduction=reduction))
    metrics = os.path.join(folder, "metrics.jsonl")
    command = [BIN, "train", "--config", job, "--metrics", metrics, "--threads", "1", "--workers", "2",
               "--log-every", "1000000", "--no-progress"]
    if traced:
        command += ["--trace", os.path.join(folder, "trace.json")]
    run = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    if run.returncode != 0:
        raise RuntimeError(run.stderr)
    kernel = re.search(r"oneDNN (\w+)", run.stderr)
    rates = [json.loads(line)["samples_per_second"] for line in open(metrics)][1:]  # the first epoch warms up
    os.remove(metrics)
    return statistics.median(rates), kernel.group(1) if kernel else "?"


def ddp(profiled, steps, folder):
    if shutil.which("torchrun") is None:
        return None
    command = ["torchrun", "--standalone", "--nproc_per_node=2", os.path.join(HERE, "torch_ddp.py"), "--batch", "512",
               "--steps", str(steps)] + (["--profile", folder] if profiled else [])
    for _ in range(3):  # gloo's teardown sometimes aborts after rank 0 printed; a run that printed nothing is retried
        run = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        if lines:
            return json.loads(lines[-1])["samples_per_second"]
    return None


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--smoke", action="store_true", help="one repeat of 16 steps")
    p.add_argument("--output", help="also write the table here")
    a = p.parse_args()
    repeats, steps = (1, 16) if a.smoke else (a.repeats, a.steps)
    configs = [("exact", False), ("exact", True), ("fast", False), ("fast", True), ("ddp", False), ("ddp", True)]
    rates = {c: [] for c in configs}
    kernel = "?"
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(repeats):
            for mode, traced in configs:
                if mode == "ddp":
                    rate = ddp(traced, steps, folder)
                else:
                    rate, kernel = shardtrain(mode, traced, steps, folder)
                if rate is not None:
                    rates[(mode, traced)].append(rate)
    lines = [f"CPU: {cpu_name()}, {os.cpu_count()} cores; shardtrain products on oneDNN {kernel}; "
             f"{repeats} interleaved repeats of {steps} steps; samples/s, medians",
             "| run | untraced | traced | traced / untraced (median; range over repeats) |",
             "| --- | --- | --- | --- |"]
    for mode, label in [("exact", "shardtrain exact, --trace"), ("fast", "shardtrain fast, --trace"),
                        ("ddp", "DDP, torch.profiler")]:
        off, on = rates[(mode, False)], rates[(mode, True)]
        if not off or not on:
            lines.append(f"| {label} | n/a | n/a | n/a |")
            continue
        ratios = [b / a for a, b in zip(off, on)]
        lines.append(f"| {label} | {statistics.median(off):,.0f} | {statistics.median(on):,.0f} | "
                     f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f}) |")
    text = "\n".join(lines)
    print(text)
    if a.output:
        with open(a.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
