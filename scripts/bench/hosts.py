#!/usr/bin/env python3
"""Across machines (called by scripts/bench-hosts.sh, as root): a coordinator host and N worker hosts in network
namespaces, each host with one link to a switch (a bridge in a namespace of its own), **every link limited to the
same rate in both directions** (tc's token bucket), the coordinator's included. shardtrain's coordinator and one
worker per worker host over TCP, exact and fast, against PyTorch DDP (gloo, one rank on each worker host, torchrun)
at the same global batch, SGD momentum. Prints samples/s, each run's busiest host's bytes on its link per step (sent
plus received, in model-sizes: 4 bytes a parameter), and the coordinator's per-step split; writes JSON only when
asked. Removes every namespace it made and every process it started."""
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from scaling import BIN, JOB, write_data  # noqa: E402  (one job text and its data for both benchmarks)

TAG = f"sb{os.getpid() % 10000}"
NET = f"10.89.{os.getpid() % 200 + 20}"
MODELS = {"mnist-mlp": [512, 256], "mnist-wide": [1024, 1024]}  # hidden layers; 784 inputs, 10 classes
started = []
hosts = []  # "coord", then "w1" ... "wN"


def sh(*command, check=True):
    return subprocess.run(command, check=check, capture_output=True, text=True)


def on(host, command):
    return ["ip", "netns", "exec", f"{TAG}-{host}"] + command


def address(host):
    return f"{NET}.1" if host == "coord" else f"{NET}.{10 + int(host[1:])}"


def make_hosts(workers):
    hosts[:] = ["coord"] + [f"w{i}" for i in range(1, workers + 1)]
    for name in ["sw"] + hosts:
        sh("ip", "netns", "add", f"{TAG}-{name}")
    sh(*on("sw", ["ip", "link", "add", "br0", "type", "bridge"]))
    sh(*on("sw", ["ip", "link", "set", "br0", "up"]))
    for host in hosts:
        inside, switched = f"{TAG}{host}", f"{TAG}s{host}"
        sh("ip", "link", "add", inside, "type", "veth", "peer", "name", switched)
        sh("ip", "link", "set", inside, "netns", f"{TAG}-{host}")
        sh("ip", "link", "set", switched, "netns", f"{TAG}-sw")
        sh(*on("sw", ["ip", "link", "set", switched, "master", "br0", "up"]))
        sh(*on(host, ["ip", "link", "set", "lo", "up"]))
        sh(*on(host, ["ip", "addr", "add", f"{address(host)}/24", "dev", inside]))
        sh(*on(host, ["ip", "link", "set", inside, "up"]))


def bits_per_second(rate):
    units = {"kbit": 10**3, "mbit": 10**6, "gbit": 10**9}
    for unit, scale in units.items():
        if rate.endswith(unit):
            return int(float(rate[:-len(unit)]) * scale)
    raise SystemExit(f"--rates: {rate!r} is not a rate such as 1gbit or 500mbit")


def limit(rate):
    """Every host's link at `rate` both ways (None: unlimited): egress on the host's end and on the switch's end."""
    for host in hosts:
        for where, device in ((host, f"{TAG}{host}"), ("sw", f"{TAG}s{host}")):
            sh(*on(where, ["tc", "qdisc", "del", "dev", device, "root"]), check=False)
            if rate:
                # A token bucket holding a millisecond's bytes (64 KiB at least: veth passes 64 KiB segments).
                burst = max(65536 * 2, bits_per_second(rate) // 8000)
                sh(*on(where, ["tc", "qdisc", "add", "dev", device, "root", "tbf", "rate", rate, "burst", str(burst),
                               "latency", "100ms"]))


def link_bytes():
    """Each host's bytes sent plus received on its link so far."""
    counts = {}
    for host in hosts:
        stats = json.loads(sh(*on(host, ["ip", "-j", "-s", "link", "show", "dev", f"{TAG}{host}"])).stdout)[0]
        counts[host] = stats["stats64"]["rx"]["bytes"] + stats["stats64"]["tx"]["bytes"]
    return counts


def busiest(before, after):
    host = max(hosts, key=lambda h: after[h] - before[h])
    return host, after[host] - before[host]


def remove_hosts():
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for name in ["sw"] + hosts:
        sh("ip", "netns", "del", f"{TAG}-{name}", check=False)


def spawn(host, command, log, env=None):
    process = subprocess.Popen(on(host, command), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               env=dict(os.environ, **(env or {})))
    started.append(process)
    return process


def job_text(model, batch, reduction, steps, micro_shard):
    layers = "".join(f"    - {{units: {units}, activation: relu}}\n" for units in MODELS[model])
    text = JOB.format(optimizer="{name: sgd, lr: 0.01, momentum: 0.9}", batch=batch, steps=steps,
                      reduction=reduction).replace("micro_shard: 128", f"micro_shard: {micro_shard}")
    return re.sub(r"  layers:\n(    - .*\n)+?(?=    - \{units: 10,)", "  layers:\n" + layers, text)


def shardtrain(model, batch, reduction, steps, folder, port, micro_shard, flags):
    job = os.path.join(folder, "job.yaml")
    with open(job, "w") as f:
        f.write(job_text(model, batch, reduction, steps, micro_shard))
    write_data(folder, batch * 4)
    metrics = os.path.join(folder, "metrics.jsonl")
    if os.path.exists(metrics):
        os.remove(metrics)
    endpoint = f"tcp://{address('coord')}:{port}"
    env = {"OPENBLAS_NUM_THREADS": "1"}
    workers = hosts[1:]
    before = link_bytes()
    with open(os.path.join(folder, "coordinator.log"), "w") as log:
        coordinator = spawn("coord", [BIN, "coordinator", "--config", job, "--bind", endpoint, "--workers",
                                      str(len(workers)), "--insecure", "--metrics", metrics, "--verbose",
                                      "--log-every", "1000000"] + flags, log, env)
    processes = []
    for host in workers:
        with open(os.path.join(folder, f"{host}.log"), "w") as log:
            processes.append(spawn(host, [BIN, "worker", "--connect", endpoint, "--name", host, "--threads", "1",
                                          "--insecure", "--idle-timeout", "30"], log, env))
    if coordinator.wait(timeout=1800) != 0:
        raise RuntimeError(open(os.path.join(folder, "coordinator.log")).read()[-2000:])
    for process in processes:
        process.wait(timeout=60)
    host, moved = busiest(before, link_bytes())
    text = open(os.path.join(folder, "coordinator.log")).read()
    rates = [json.loads(line)["samples_per_second"] for line in open(metrics)][1:]  # first epoch warms up
    timings = [tuple(float(v) for v in m) for m in
               re.findall(r"send ([\d.]+) ms, wait ([\d.]+) ms, reduce ([\d.]+) ms", text)][steps // 4:]
    row = {"samples_per_second": statistics.median(rates), "busiest_host": host, "busiest_bytes_per_step": moved / steps,
           # The coordinator's verdicts on packing results and means (FloatPacking), in order.
           "packing": re.findall(r"results and means in parts go (packed|as Floats)", text)}
    if timings:
        row.update({name: statistics.median(t[i] for t in timings) for i, name in
                    enumerate(("send_ms", "wait_ms", "reduce_ms"))})
        row["step_ms"] = batch / row["samples_per_second"] * 1000
    return row


def ddp(model, batch, steps, folder, port):
    """DDP with one rank on each worker host; rank 0 prints samples/s. None if it did not finish."""
    workers = hosts[1:]
    before = link_bytes()
    processes = []
    for rank, host in enumerate(workers):
        with open(os.path.join(folder, f"ddp{rank}.log"), "w") as log:
            processes.append(spawn(host, ["torchrun", f"--nnodes={len(workers)}", "--nproc_per_node=1",
                                          f"--node_rank={rank}", f"--master_addr={address('w1')}",
                                          f"--master_port={port}", os.path.join(HERE, "torch_ddp.py"), "--batch",
                                          str(batch), "--optimizer", "sgd", "--steps", str(steps), "--hidden"]
                                   + [str(units) for units in MODELS[model]], log,
                                   # torchrun leaves its torchelastic_* folders in TMPDIR: the run's folder.
                                   {"OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": f"{TAG}{host}", "TMPDIR": folder}))
    for process in processes:
        try:
            process.wait(timeout=1800)
        except subprocess.TimeoutExpired:
            pass
    host, moved = busiest(before, link_bytes())
    lines = [line for line in open(os.path.join(folder, "ddp0.log")) if line.startswith("{")]
    if not lines:
        return None
    return {"samples_per_second": json.loads(lines[-1])["samples_per_second"], "busiest_host": host,
            "busiest_bytes_per_step": moved / (steps + 5)}  # torch_ddp.py runs 5 steps to warm up


def parameters_of(model):
    widths = [784] + MODELS[model] + [10]
    return sum(widths[i] * widths[i + 1] + widths[i + 1] for i in range(len(widths) - 1))


def arguments():
    p = argparse.ArgumentParser()
    p.add_argument("--rates", nargs="+", default=["1gbit", "10gbit", "none"],
                   help="every host's link rate, as tc writes it, or none")
    p.add_argument("--worker-hosts", type=int, nargs="+", default=[2], help="numbers of worker hosts to measure")
    p.add_argument("--model", choices=sorted(MODELS), default="mnist-mlp",
                   help="mnist-mlp (784-512-256-10, 535,818 parameters) or mnist-wide (784-1024-1024-10, 1,863,690)")
    p.add_argument("--batch", type=int, default=1024, help="the global batch (unless --per-worker)")
    p.add_argument("--per-worker", type=int, help="samples per worker host per step: the global batch grows with N")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--micro-shard", type=int, default=128, help="exact mode's micro-shard size")
    p.add_argument("--overlap", action="store_true",
                   help="also run exact and fast mode with --overlap on (the others with off), in the same interleaved runs")
    p.add_argument("--layouts", nargs="+", choices=["star", "sharded"], default=["star"],
                   help="reduction layouts to run (sharded: --layout sharded, results to the workers' owners)")
    p.add_argument("--trace", metavar="FOLDER",
                   help="write each shardtrain run's Chrome trace (--trace) into FOLDER, named by N, rate, variant, repeat")
    p.add_argument("--json", metavar="PATH", help="write the figures here as JSON (nothing is written without this flag)")
    p.add_argument("--smoke", action="store_true", help="one short run at 1gbit, with and without --overlap, without DDP or JSON")
    a = p.parse_args()
    if a.smoke:
        a.rates, a.repeats, a.steps, a.overlap, a.worker_hosts = ["1gbit"], 1, 8, True, [2]
        a.layouts = ["star", "sharded"]
    if any(n < 1 or n > 60 for n in a.worker_hosts):
        p.error(f"--worker-hosts: {a.worker_hosts} must each be 1 to 60")
    return a


def measure(a, workers, rate, folder, port, has_torch):
    """Interleaved repeats of every variant and DDP at one N and rate; the median run of each."""
    variants = {}
    if "star" in a.layouts:
        star = ["--layout", "star"]
        variants.update({"exact": ["exact", ["--overlap", "off"] + star], "fast": ["fast", ["--overlap", "off"] + star]})
        if a.overlap:
            variants.update({"exact overlap": ["exact", ["--overlap", "on"] + star],
                             "fast overlap": ["fast", ["--overlap", "on"] + star]})
    if "sharded" in a.layouts:
        variants.update({"exact sharded": ["exact", ["--layout", "sharded"]],
                         "fast sharded": ["fast", ["--layout", "sharded"]]})
    batch = a.per_worker * workers if a.per_worker else a.batch
    runs = {name: [] for name in list(variants) + ["ddp"]}
    for repeat in range(a.repeats):
        for name, (reduction, flags) in variants.items():
            port += 1
            if a.trace:
                os.makedirs(a.trace, exist_ok=True)
                trace = f"{workers}-{rate}-{name.replace(' ', '-')}-{repeat + 1}.json"
                flags = flags + ["--trace", os.path.join(os.path.abspath(a.trace), trace)]
            runs[name].append(shardtrain(a.model, batch, reduction, a.steps, folder, port, a.micro_shard, flags))
        if has_torch:
            port += 1
            runs["ddp"].append(ddp(a.model, batch, a.steps, folder, port))
    runs["ddp"] = [r for r in runs["ddp"] if r]
    median = {n: sorted(v, key=lambda x: x["samples_per_second"])[len(v) // 2] for n, v in runs.items() if v}
    return {"rate": rate, "worker_hosts": workers, "batch": batch, "runs": runs, **median}, port


def main():
    a = arguments()
    has_torch = not a.smoke and shutil.which("torchrun") is not None
    parameters = parameters_of(a.model)
    model_bytes = 4 * parameters
    names = ((["exact", "fast"] + (["exact overlap", "fast overlap"] if a.overlap else [])) if "star" in a.layouts else []) \
        + (["exact sharded", "fast sharded"] if "sharded" in a.layouts else [])
    rows = []
    # A SIGTERM or SIGHUP still removes the namespaces and processes (in `finally`).
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, lambda *_: sys.exit(143))
    print(f"{a.model} ({parameters:,} parameters), SGD momentum, "
          + (f"{a.per_worker} samples per worker host" if a.per_worker else f"global batch {a.batch}")
          + f", 1 thread each, exact mode's micro-shard {a.micro_shard}; every host's link limited alike; "
          f"medians of {a.repeats} interleaved runs; busiest host's link, sent + received per step, in model-sizes")
    print(f"{'N':>2} {'link':>6} | " + " ".join(f"{n:>13}" for n in names) + f" {'DDP':>7} | "
          + " ".join(f"{n + ' / DDP':>19}" for n in names) + " | busiest: " + " / ".join(names + ["DDP"])
          + " | exact ms: step send wait reduce")
    port = 6100
    with tempfile.TemporaryDirectory() as folder:
        for workers in a.worker_hosts:
            try:
                make_hosts(workers)
                for rate in a.rates:
                    limit(None if rate == "none" else rate)
                    row, port = measure(a, workers, rate, folder, port, has_torch)
                    rows.append(row)
                    peer = row.get("ddp", {}).get("samples_per_second")
                    ratio = lambda n: f"{row[n]['samples_per_second'] / peer:19.2f}" if peer else f"{'n/a':>19}"
                    sizes = " / ".join(f"{row[n]['busiest_bytes_per_step'] / model_bytes:.1f}" if n in row else "n/a"
                                       for n in names + ["ddp"])
                    e = row[names[0]]
                    print(f"{workers:>2} {rate:>6} | " + " ".join(f"{row[n]['samples_per_second']:13.0f}" for n in names)
                          + f" {peer or 0:7.0f} | " + " ".join(ratio(n) for n in names) + f" | {sizes}"
                          + f" | {e.get('step_ms', 0):.1f} {e.get('send_ms', 0):.2f} {e.get('wait_ms', 0):.2f} "
                          f"{e.get('reduce_ms', 0):.2f}"
                          + "".join(f" | {n}: {'/'.join(row[n]['packing'])}" for n in names if row[n].get("packing")),
                          flush=True)
            finally:
                remove_hosts()
    if a.json and not a.smoke:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "parameters": parameters, "micro_shard": a.micro_shard,
                       "per_worker": a.per_worker, "rows": rows}, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
