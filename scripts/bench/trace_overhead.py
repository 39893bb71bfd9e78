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
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from scaling import BIN, JOB, write_data  # noqa: E402  (one mnist-mlp job text and its data for the benchmarks)


def job_text(reduction, steps):
    """mnist-mlp, SGD momentum, a batch of 512 in 64-sample micro-shards, 2,048 samples."""
    return JOB.format(optimizer="{name: sgd, lr: 0.01, momentum: 0.9}", batch=512, steps=steps,
                      reduction=reduction).replace("micro_shard: 128", "micro_shard: 64")


def shardtrain(reduction, traced, steps, folder):
    job = os.path.join(folder, f"{reduction}.yaml")
    with open(job, "w") as f:
        f.write(job_text(reduction, steps))
    write_data(folder, 2048)
    metrics = os.path.join(folder, "metrics.jsonl")
    command = [BIN, "train", "--config", job, "--metrics", metrics, "--threads", "1", "--workers", "2",
               "--log-every", "1000000", "--no-progress"]
    if traced:
        command += ["--trace", os.path.join(folder, "trace.json")]
    before = cpu_seconds()
    run = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    cpu = cpu_seconds() - before
    if run.returncode != 0:
        raise RuntimeError(run.stderr)
    kernel = re.search(r"oneDNN (\w+)", run.stderr)
    rates = [json.loads(line)["samples_per_second"] for line in open(metrics)][1:]  # the first epoch warms up
    os.remove(metrics)
    # The share of a traced run its trace file's thread spent writing (the run's own closing line).
    writing = re.search(r"--trace: .* ([\d.]+) % of the run", run.stderr)
    return (statistics.median(rates), cpu, kernel.group(1) if kernel else "?",
            float(writing.group(1)) if writing else None)



def cpu_seconds():
    """User and system seconds of every finished child process and theirs (the workers are the coordinator's)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ddp(profiled, steps, folder):
    if shutil.which("torchrun") is None:
        return None
    command = ["torchrun", "--standalone", "--nproc_per_node=2", os.path.join(HERE, "torch_ddp.py"), "--batch", "512",
               "--steps", str(steps)] + (["--profile", folder] if profiled else [])
    for _ in range(3):  # gloo's teardown sometimes aborts after rank 0 printed; a run that printed nothing is retried
        before = cpu_seconds()
        # torchrun leaves its torchelastic_* folders in TMPDIR: one removed after each run.
        with tempfile.TemporaryDirectory() as scratch:
            run = subprocess.run(command, capture_output=True, text=True,
                                 env=dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=scratch))
        cpu = cpu_seconds() - before
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        if lines:
            return json.loads(lines[-1])["samples_per_second"], cpu
    return None


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--smoke", action="store_true", help="one repeat of 16 steps")
    p.add_argument("--output", help="also write the table here")
    a = p.parse_args()
    repeats, steps = (1, 16) if a.smoke else (a.repeats, a.steps)
    configs = [("exact", False), ("exact", True), ("fast", False), ("fast", True), ("ddp", False), ("ddp", True)]
    rates = {c: [] for c in configs}
    cpus = {c: [] for c in configs}
    kernel, writing_shares = "?", []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(repeats):
            for mode, traced in configs:
                if mode == "ddp":
                    # A run that printed nothing leaves a gap, so each repeat's pair stays a pair.
                    rate, cpu = ddp(traced, steps, folder) or (None, None)
                else:
                    rate, cpu, kernel, writing = shardtrain(mode, traced, steps, folder)
                    if writing is not None:
                        writing_shares.append(writing)
                rates[(mode, traced)].append(rate)
                cpus[(mode, traced)].append(cpu)
    lines = [f"CPU: {cpu_name()}, {os.cpu_count()} cores; shardtrain products on oneDNN {kernel}; "
             f"{repeats} interleaved repeats of {steps} steps; samples/s (medians), and the runs' processor seconds "
             "(user + system, every process; the whole run, start-up included)",
             "| run | untraced samples/s | traced samples/s | traced / untraced (median; range) | processor seconds, "
             "untraced / traced (medians) | traced / untraced processor time (median; range) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for mode, label in [("exact", "shardtrain exact, --trace"), ("fast", "shardtrain fast, --trace"),
                        ("ddp", "DDP, torch.profiler")]:
        pairs = [(a, b, c, d) for a, b, c, d in zip(rates[(mode, False)], rates[(mode, True)], cpus[(mode, False)],
                                                    cpus[(mode, True)]) if None not in (a, b, c, d)]
        if not pairs:
            lines.append(f"| {label} | n/a | n/a | n/a | n/a | n/a |")
            continue
        off, on = [p[0] for p in pairs], [p[1] for p in pairs]
        ratios = [b / a for a, b in zip(off, on)]
        cpu_off, cpu_on = [p[2] for p in pairs], [p[3] for p in pairs]
        cpu_ratios = [b / a for a, b in zip(cpu_off, cpu_on)]
        lines.append(f"| {label} | {statistics.median(off):,.0f} | {statistics.median(on):,.0f} | "
                     f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f}) | "
                     f"{statistics.median(cpu_off):.2f} / {statistics.median(cpu_on):.2f} | "
                     f"{statistics.median(cpu_ratios):.3f} ({min(cpu_ratios):.3f}–{max(cpu_ratios):.3f}) |")
    if writing_shares:
        lines.append(f"Writing the trace file, on its own thread: {statistics.median(writing_shares):.2f} % of a traced "
                     f"run's time (median; {min(writing_shares):.2f}–{max(writing_shares):.2f} %).")
    bench = os.path.join(ROOT, ".build", "release", "shardtrain-bench")
    if os.path.exists(bench):
        one = json.loads(subprocess.run([bench, "trace", "--model", "mnist-mlp", "--micro-shard", "64"],
                                        capture_output=True, text=True, check=True).stdout)
        lines.append(f"One worker thread, mnist-mlp, a 64-sample micro-shard ({one['kernel']}): "
                     f"{one['untraced_pass_us']:.0f} µs untraced, {one['traced_pass_us']:.0f} µs with its "
                     f"{one['spans_per_pass']} spans recorded ({one['traced_over_untraced']:.4f}×, medians of "
                     f"{one['pairs']} interleaved pairs); a report of {one['report_spans']} spans encoded and decoded "
                     f"in {one['report_encode_decode_us']:.1f} µs.")
    text = "\n".join(lines)
    print(text)
    if a.output:
        with open(a.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
