#!/usr/bin/env python3
"""Failure-survival benchmark (called by scripts/bench-failures.sh), on mnist-mlp with two workers, exact mode:
  - the cost of heartbeats (the default 1 s against 1000 s, i.e. none during the run) and of checkpoints (each epoch,
    and every step) in samples/s, medians of interleaved repeats;
  - a checkpoint's size, and its write time (the every-step run's extra time per step);
  - the time from a worker's SIGKILL to the coordinator declaring it lost and to the step completing on the survivor,
    for a local worker (train --workers) and for a worker the coordinator did not start (coordinator + worker).
Prints a table and writes JSON."""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".build", "release", "shardtrain")

JOB = """model:
  inputs: 784
  layers:
    - {{units: 512, activation: relu}}
    - {{units: 256, activation: relu}}
    - {{units: 10, activation: softmax}}
loss: cross_entropy
optimizer: {{name: sgd, lr: 0.01, momentum: 0.9}}
batch_size: 512
epochs: {epochs}
micro_shard: 128
seed: 3
data: {{builtin: blobs, samples: {samples}, classes: 10, features: 784, noise: 1.0}}
"""


def write_job(folder, epochs, samples):
    path = os.path.join(folder, f"job-{epochs}-{samples}.yaml")
    with open(path, "w") as f:
        f.write(JOB.format(epochs=epochs, samples=samples))
    return path


def throughput(job, extra):
    metrics = job + ".metrics"
    subprocess.run([BIN, "train", "--config", job, "--workers", "2", "--metrics", metrics] + extra,
                   capture_output=True, check=True)
    with open(metrics) as f:
        rates = [json.loads(line)["samples_per_second"] for line in f]
    return statistics.median(rates[1:])  # the first epoch includes the workers' start


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def watch(log, started, pattern, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(log) as f:
            text = f.read()
        match = re.search(pattern, text)
        if match:
            return text, match
        time.sleep(0.0005)
    raise RuntimeError(f"no /{pattern}/ in {log}")


def kill_to_completion(job, folder, remote):
    """Seconds from SIGKILL to the 'lost' line and to the first step completed after it."""
    log = os.path.join(folder, "kill.log")
    open(log, "w").close()
    processes = []
    with open(log, "a") as sink:
        if remote:
            port = free_port()
            coordinator = subprocess.Popen([BIN, "coordinator", "--config", job, "--bind", f"tcp://127.0.0.1:{port}",
                                            "--workers", "2", "--verbose"], stdout=subprocess.DEVNULL, stderr=sink)
            processes.append(coordinator)
            workers = [subprocess.Popen([BIN, "worker", "--connect", f"tcp://127.0.0.1:{port}", "--name", f"b{i}"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in (1, 2)]
            processes += workers
        else:
            coordinator = subprocess.Popen([BIN, "train", "--config", job, "--workers", "2", "--verbose"],
                                           stdout=subprocess.DEVNULL, stderr=sink)
            processes.append(coordinator)
        try:
            text, _ = watch(log, time.time(), r"step 40:")
            pid = int(re.findall(r'"(?:b1|local-1)" \([^,]+, pid (\d+)\) ready', text)[0])
            started = time.time()
            os.kill(pid, signal.SIGKILL)
            text, lost = watch(log, started, r"lost: .*")
            detected = time.time() - started
            # The step the loss interrupted completes on the survivor: the next step line after the loss.
            watch(log, started, re.escape(lost.group(0)) + r"[^\n]*\n(?:[^\n]*\n)*?step \d+:")
            completed = time.time() - started
            return detected, completed, lost.group(0)[:120]
        finally:
            for process in processes:
                process.kill()
                process.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="one short repeat of each")
    args = parser.parse_args()
    repeats, epochs, samples = (1, 3, 4096) if args.smoke else (3, 6, 16384)
    folder = tempfile.mkdtemp()
    try:
        job = write_job(folder, epochs, samples)
        kernel = subprocess.run([BIN, "train", "--config", job, "--epochs", "1", "--verbose"], capture_output=True,
                                text=True, check=True).stdout.splitlines()[0].split("products on ")[-1]
        configs = {
            "heartbeat 1 s (default)": [],
            "heartbeat 1000 s (none during the run)": ["--heartbeat", "1000"],
            "checkpoint each epoch": ["--checkpoint", os.path.join(folder, "ck-epoch")],
            "checkpoint every step": ["--checkpoint", os.path.join(folder, "ck-step"), "--checkpoint-every", "1"],
        }
        rates = {name: [] for name in configs}
        for _ in range(repeats):
            for name, extra in configs.items():
                for flag in extra:
                    if flag.startswith(folder):
                        shutil.rmtree(flag, ignore_errors=True)
                rates[name].append(throughput(job, extra))
        medians = {name: statistics.median(values) for name, values in rates.items()}
        checkpoint = sorted(os.listdir(os.path.join(folder, "ck-epoch")))[-1]
        size = os.path.getsize(os.path.join(folder, "ck-epoch", checkpoint))
        base = medians["heartbeat 1 s (default)"]
        step_seconds = 512 / base
        # Every-step checkpoints against none: the extra time per step is one checkpoint's write.
        write_seconds = max(0.0, 512 / medians["checkpoint every step"] - step_seconds)
        long_job = write_job(folder, 1000, samples)
        kills = {"local worker (train --workers 2)": [], "remote worker (coordinator + 2 workers)": []}
        for _ in range(repeats):
            kills["local worker (train --workers 2)"].append(kill_to_completion(long_job, folder, remote=False))
            kills["remote worker (coordinator + 2 workers)"].append(kill_to_completion(long_job, folder, remote=True))
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"CPU: {cpu}, {os.cpu_count()} cores; products on {kernel}; mnist-mlp, batch 512, micro-shard 128, exact, "
          f"2 workers; medians of {repeats} interleaved runs")
    print(f"{'configuration':42} {'samples/s':>10} {'vs default':>10}")
    for name, value in medians.items():
        print(f"{name:42} {value:10,.0f} {value / base - 1:+10.1%}")
    epoch_seconds = step_seconds * (samples // 512)
    print(f"checkpoint: {size / 1e6:.2f} MB, written in ~{write_seconds * 1000:.1f} ms (fsync included); one per "
          f"epoch of {samples // 512} steps ({epoch_seconds * 1000:.0f} ms) costs {write_seconds / epoch_seconds:.1%}")
    for name, values in kills.items():
        detected = statistics.median(v[0] for v in values)
        completed = statistics.median(v[1] for v in values)
        print(f"SIGKILL of a {name}: lost after {detected * 1000:.0f} ms, step completed on the survivor after "
              f"{completed * 1000:.0f} ms (median); e.g. {values[0][2]}")
    results = {"cpu": cpu, "kernel": kernel, "samples_per_second": medians, "checkpoint_bytes": size,
               "checkpoint_write_seconds": write_seconds, "step_seconds": step_seconds,
               "kill": {name: [{"lost": v[0], "completed": v[1]} for v in values] for name, values in kills.items()}}
    if not args.smoke:
        with open(os.path.join(ROOT, "scripts", "bench", "failures-results.json"), "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
