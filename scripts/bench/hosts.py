#!/usr/bin/env python3
"""Across machines (called by scripts/bench-hosts.sh, as root): a coordinator host and two worker hosts in network
namespaces on a bridge, each worker's link limited to a rate in both directions (tc's token bucket). shardtrain's
coordinator and two workers over TCP, exact and fast, against PyTorch DDP (gloo, one rank on each worker host,
torchrun), mnist-mlp at a global batch, SGD momentum. Prints samples/s and the coordinator's per-step split; writes
JSON. Removes every namespace it made and every process it started."""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from scaling import BIN, JOB, ROOT  # noqa: E402  (one job text for both benchmarks)

TAG = f"sb{os.getpid() % 10000}"
NET = f"10.89.{os.getpid() % 200 + 20}"
HOSTS = ["coord", "w1", "w2"]
ADDRESS = {"coord": f"{NET}.1", "w1": f"{NET}.11", "w2": f"{NET}.12"}
started = []


def sh(*command, check=True):
    return subprocess.run(command, check=check, capture_output=True, text=True)


def on(host, command):
    return ["ip", "netns", "exec", f"{TAG}-{host}"] + command


def make_hosts():
    for host in HOSTS:
        sh("ip", "netns", "add", f"{TAG}-{host}")
    sh(*on("coord", ["ip", "link", "set", "lo", "up"]))
    sh(*on("coord", ["ip", "link", "add", "br0", "type", "bridge"]))
    sh(*on("coord", ["ip", "addr", "add", f"{ADDRESS['coord']}/24", "dev", "br0"]))
    sh(*on("coord", ["ip", "link", "set", "br0", "up"]))
    for host in ("w1", "w2"):
        inside, bridged = f"{TAG}{host}", f"{TAG}b{host}"
        sh("ip", "link", "add", inside, "type", "veth", "peer", "name", bridged)
        sh("ip", "link", "set", inside, "netns", f"{TAG}-{host}")
        sh("ip", "link", "set", bridged, "netns", f"{TAG}-coord")
        sh(*on("coord", ["ip", "link", "set", bridged, "master", "br0", "up"]))
        sh(*on(host, ["ip", "link", "set", "lo", "up"]))
        sh(*on(host, ["ip", "addr", "add", f"{ADDRESS[host]}/24", "dev", inside]))
        sh(*on(host, ["ip", "link", "set", inside, "up"]))


def bits_per_second(rate):
    units = {"kbit": 10**3, "mbit": 10**6, "gbit": 10**9}
    for unit, scale in units.items():
        if rate.endswith(unit):
            return int(float(rate[:-len(unit)]) * scale)
    raise SystemExit(f"--rates: {rate!r} is not a rate such as 1gbit or 500mbit")


def limit(rate):
    """Each worker's link at `rate` both ways (None: unlimited)."""
    for host in ("w1", "w2"):
        for where, device in ((host, f"{TAG}{host}"), ("coord", f"{TAG}b{host}")):
            sh(*on(where, ["tc", "qdisc", "del", "dev", device, "root"]), check=False)
            if rate:
                # A token bucket holding a millisecond's bytes (64 KiB at least: veth passes 64 KiB segments).
                burst = max(65536 * 2, bits_per_second(rate) // 8000)
                sh(*on(where, ["tc", "qdisc", "add", "dev", device, "root", "tbf", "rate", rate, "burst", str(burst),
                               "latency", "100ms"]))


def remove_hosts():
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for host in HOSTS:
        sh("ip", "netns", "del", f"{TAG}-{host}", check=False)


def spawn(host, command, log, env=None):
    process = subprocess.Popen(on(host, command), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               env=dict(os.environ, **(env or {})))
    started.append(process)
    return process


def shardtrain(batch, reduction, steps, folder, port, micro_shard, flags):
    job = os.path.join(folder, "job.yaml")
    with open(job, "w") as f:
        f.write(JOB.format(optimizer="{name: sgd, lr: 0.01, momentum: 0.9}", batch=batch, steps=steps,
                           reduction=reduction, samples=batch * 4).replace("micro_shard: 128", f"micro_shard: {micro_shard}"))
    metrics = os.path.join(folder, "metrics.jsonl")
    if os.path.exists(metrics):
        os.remove(metrics)
    endpoint = f"tcp://{ADDRESS['coord']}:{port}"
    env = {"OPENBLAS_NUM_THREADS": "1"}
    with open(os.path.join(folder, "coordinator.log"), "w") as log:
        coordinator = spawn("coord", [BIN, "coordinator", "--config", job, "--bind", endpoint, "--workers", "2",
                                      "--insecure", "--metrics", metrics, "--verbose",
                                      "--log-every", "1000000"] + flags, log, env)
    workers = []
    for host in ("w1", "w2"):
        with open(os.path.join(folder, f"{host}.log"), "w") as log:
            workers.append(spawn(host, [BIN, "worker", "--connect", endpoint, "--name", host, "--threads", "1",
                                        "--insecure", "--idle-timeout", "30"], log, env))
    if coordinator.wait(timeout=600) != 0:
        raise RuntimeError(open(os.path.join(folder, "coordinator.log")).read()[-2000:])
    for worker in workers:
        worker.wait(timeout=60)
    text = open(os.path.join(folder, "coordinator.log")).read()
    rates = [json.loads(line)["samples_per_second"] for line in open(metrics)][1:]  # first epoch warms up
    timings = [tuple(float(v) for v in m) for m in
               re.findall(r"send ([\d.]+) ms, wait ([\d.]+) ms, reduce ([\d.]+) ms", text)][steps // 4:]
    row = {"samples_per_second": statistics.median(rates)}
    if timings:
        row.update({name: statistics.median(t[i] for t in timings) for i, name in
                    enumerate(("send_ms", "wait_ms", "reduce_ms"))})
        row["step_ms"] = batch / row["samples_per_second"] * 1000
    return row


def ddp(batch, steps, folder, port):
    """DDP samples/s with one rank on each worker host; rank 0 prints the figure."""
    processes = []
    for rank, host in enumerate(("w1", "w2")):
        with open(os.path.join(folder, f"ddp{rank}.log"), "w") as log:
            processes.append(spawn(host, ["torchrun", "--nnodes=2", "--nproc_per_node=1", f"--node_rank={rank}",
                                          f"--master_addr={ADDRESS['w1']}", f"--master_port={port}",
                                          os.path.join(HERE, "torch_ddp.py"), "--batch", str(batch), "--optimizer",
                                          "sgd", "--steps", str(steps)], log,
                                   {"OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": f"{TAG}{host}"}))
    for process in processes:
        try:
            process.wait(timeout=600)
        except subprocess.TimeoutExpired:
            pass
    lines = [line for line in open(os.path.join(folder, "ddp0.log")) if line.startswith("{")]
    return json.loads(lines[-1])["samples_per_second"] if lines else None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rates", nargs="+", default=["1gbit", "10gbit", "none"],
                   help="each worker link's rate, as tc writes it, or none")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--micro-shard", type=int, default=128, help="exact mode's micro-shard size")
    p.add_argument("--overlap", action="store_true",
                   help="also run exact and fast mode with --overlap on (the others with off), in the same interleaved runs")
    p.add_argument("--json", metavar="PATH", help="write the figures here as JSON (the committed ones are "
                   "scripts/bench/hosts-results.json; nothing is written without this flag)")
    p.add_argument("--smoke", action="store_true", help="one short run at 1gbit, with and without --overlap, without DDP or JSON")
    a = p.parse_args()
    if a.smoke:
        a.rates, a.repeats, a.steps, a.overlap = ["1gbit"], 1, 8, True
    has_torch = not a.smoke and shutil.which("torchrun") is not None
    parameters = 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10
    rows = []
    # A SIGTERM or SIGHUP still removes the namespaces and processes (in `finally`).
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, lambda *_: sys.exit(143))
    try:
        make_hosts()
        with tempfile.TemporaryDirectory() as folder:
            variants = {"exact": ["exact", ["--overlap", "off"]], "fast": ["fast", ["--overlap", "off"]]}
            if a.overlap:
                variants.update({"exact overlap": ["exact", ["--overlap", "on"]], "fast overlap": ["fast", ["--overlap", "on"]]})
            print(f"mnist-mlp ({parameters:,} parameters), global batch {a.batch}, SGD momentum, 2 worker hosts, "
                  f"1 thread each, exact mode's micro-shard {a.micro_shard}; medians of {a.repeats} interleaved runs")
            names = list(variants)
            print(f"{'link':>7} | " + " ".join(f"{n:>13}" for n in names) + f" {'DDP':>7} | "
                  + " ".join(f"{n + ' / DDP':>19}" for n in names) + " | exact ms per step: step send wait reduce")
            port = 6100
            for rate in a.rates:
                limit(None if rate == "none" else rate)
                runs = {name: [] for name in names + ["ddp"]}
                for _ in range(a.repeats):
                    for name, (reduction, flags) in variants.items():
                        port += 1
                        runs[name].append(shardtrain(a.batch, reduction, a.steps, folder, port, a.micro_shard,
                                                     flags))
                    if has_torch:
                        port += 1
                        runs["ddp"].append(ddp(a.batch, a.steps, folder, port))
                median = {n: sorted(runs[n], key=lambda x: x["samples_per_second"])[len(runs[n]) // 2] for n in names}
                peer = statistics.median([v for v in runs["ddp"] if v] or [0]) or None
                row = {"rate": rate, "ddp": peer, "runs": runs}
                row.update(median)
                rows.append(row)
                ratio = lambda n: f"{median[n]['samples_per_second'] / peer:19.2f}" if peer else f"{'n/a':>19}"
                e = median["exact"]
                print(f"{rate:>7} | " + " ".join(f"{median[n]['samples_per_second']:13.0f}" for n in names)
                      + f" {peer or 0:7.0f} | " + " ".join(ratio(n) for n in names)
                      + f" | {e.get('step_ms', 0):.1f} {e.get('send_ms', 0):.2f} {e.get('wait_ms', 0):.2f} "
                      f"{e.get('reduce_ms', 0):.2f}", flush=True)
    finally:
        remove_hosts()
    if a.json and not a.smoke:
        with open(a.json, "w") as f:
            json.dump({"parameters": parameters, "batch": a.batch, "micro_shard": a.micro_shard, "rows": rows}, f,
                      indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
