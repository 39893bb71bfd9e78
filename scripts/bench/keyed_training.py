#!/usr/bin/env python3
"""What CurveZMQ costs a training run (called by scripts/bench-wire.sh): mnist-mlp, batch 512, coordinator and two
worker processes over loopback tcp, plaintext against keys, in both reduction modes (exact sends 17 bytes per
parameter in plaintext over loopback and ~6.3 packed with keys; fast 4); samples/s per epoch from --metrics, epoch 0
(the workers' start) left out, medians of interleaved repeats."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from failures import BIN, free_port, write_job  # noqa: E402


def run(job, folder, keyed, reduction):
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    metrics = os.path.join(folder, f"m-{port}.jsonl")
    server, client = [], []
    if keyed:
        server = ["--key", os.path.join(folder, "run.key")]
        client = ["--key", os.path.join(folder, "run.key")]
    coordinator = subprocess.Popen([BIN, "coordinator", "--config", job, "--bind", endpoint, "--workers", "2",
                                    "--reduction", reduction, "--metrics", metrics] + server,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = [subprocess.Popen([BIN, "worker", "--connect", endpoint, "--idle-timeout", "60"] + client,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    if coordinator.wait(timeout=600) != 0:
        raise RuntimeError("the coordinator failed")
    for worker in workers:
        worker.wait(timeout=60)
    with open(metrics) as f:
        rates = [json.loads(line)["samples_per_second"] for line in f]
    return statistics.median(rates[1:])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    # The run's keys, job and metrics live here only while it runs.
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([BIN, "keygen", "--output", os.path.join(folder, "run")], check=True, capture_output=True)
        epochs, samples, repeats = (2, 2048, 1) if args.smoke else (4, 16384, 3)
        job = write_job(folder, epochs, samples)
        print(f"CurveZMQ vs plaintext in training: mnist-mlp, batch 512, 2 workers over loopback tcp, samples/s "
              f"(median of {repeats} interleaved runs, {epochs - 1} epochs of {samples} samples each)")
        print(f"{'reduction':<10} {'plaintext':>10} {'CurveZMQ':>10} {'ratio':>6}")
        for reduction in ["exact", "fast"]:
            plain, keyed = [], []
            for _ in range(repeats):
                plain.append(run(job, folder, False, reduction))
                keyed.append(run(job, folder, True, reduction))
            p, k = statistics.median(plain), statistics.median(keyed)
            print(f"{reduction:<10} {p:>10,.0f} {k:>10,.0f} {k / p:>6.2f}")


main()
