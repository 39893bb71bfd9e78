#!/usr/bin/env python3
"""Runs the engine benchmark (called by scripts/bench.sh): shardtrain exact and fast against PyTorch CPU on
mnist-mlp (1 and 2 threads, batches 64 to 512) and on a wider net (1024→1024→512→100, 1 thread, batch 128), the sgemm
limit on each model's own GEMM shapes (the faster of OpenBLAS and oneDNN), and the seed's XOR against its numpy program.
On one thread it also measures a step's floor: the same products on a step's own operands (where a step keeps its
weights, gradients and activations, so the caches cost what they cost in a step) plus one optimizer update alone.

Every measurement is a separate process (its peak RSS comes from wait4). Runs are interleaved and repeated; the
median is reported. Prints a table and writes JSON.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, ".build", "release", "shardtrain-bench")
HERE = os.path.dirname(os.path.abspath(__file__))


def measure(command, env):
    """Runs one measurement process; returns its JSON output and peak RSS in MiB."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = process.stdout.read()
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {err.decode().strip()}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    return result


def median_of(runs, key="samples_per_second"):
    return {"value": statistics.median(r[key] for r in runs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs), "runs": [r[key] for r in runs]}


def environments():
    as_set = dict(os.environ)
    unset = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    label = ", ".join(f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ)
    return [("as set" + (f" ({label})" if label else " (neither variable set here)"), as_set),
            ("OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset", unset)]


def torch_available():
    try:
        subprocess.run([sys.executable, "-c", "import torch"], check=True, capture_output=True)
        return True
    except subprocess.CalledProcessError:
        return False


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true", help="a few steps of one configuration, no peers")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", metavar="PATH", help="write the figures here as JSON (the committed ones are "
                   "scripts/bench/results.json; nothing is written without this flag)")
    a = p.parse_args()

    optimizers, repeats, epochs = ["sgd", "adam"], a.repeats, "4"
    # (model, threads, batch) in the table's order.
    configurations = [("mnist-mlp", t, b) for t in (1, 2) for b in (64, 256, 512)] + [("wide", 1, 128)]
    if a.smoke:
        optimizers, repeats, epochs, configurations = ["sgd"], 1, "1", [("mnist-mlp", 1, 64)]
    has_torch = not a.smoke and torch_available()
    report = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "models": {"mnist-mlp": "784→512 ReLU→256 ReLU→10, cross-entropy",
                                                  "wide": "1024→1024 ReLU→512 ReLU→100, cross-entropy"},
              "torch": has_torch, "environments": []}
    torch_results = {}
    for env_label, env in (environments()[:1] if a.smoke else environments()):
        section = {"environment": env_label, "rows": []}
        for model, threads, batch in configurations:
            seconds = "0.3" if a.smoke else "1"
            limit = measure([BENCH, "sgemm", "--model", model, "--batch", str(batch), "--threads", str(threads),
                             "--seconds", seconds], env)
            # oneDNN runs one thread per slice, so its limit on t threads is t slices of batch/t at one thread's speed.
            onednn = measure([BENCH, "sgemm", "--model", model, "--batch", str(batch // threads), "--library",
                              "onednn", "--seconds", seconds], env)
            limits = {"OpenBLAS": limit["limit_samples_per_second"],
                      "oneDNN": onednn["limit_samples_per_second"] * threads}
            best = max(limits, key=limits.get)
            section["kernel"] = limit["kernel"]
            section["onednn"] = onednn["gemm"]
            for optimizer in optimizers:
                runs = {"exact": [], "fast": [], "torch": [], "own": [], "update": []}
                for _ in range(repeats):
                    if threads == 1:
                        # The products where a step has their operands, with the library the engine uses.
                        runs["own"].append(measure([BENCH, "sgemm", "--model", model, "--batch", str(batch),
                                                    "--library", "onednn", "--operands", "step", "--seconds",
                                                    seconds], env))
                        runs["update"].append(measure([BENCH, "update", "--model", model, "--optimizer", optimizer,
                                                       "--seconds", seconds], env))
                    for reduction in ("exact", "fast"):
                        runs[reduction].append(measure(
                            [BENCH, "train", "--model", model, "--batch", str(batch), "--optimizer", optimizer,
                             "--threads", str(threads), "--reduction", reduction, "--epochs", epochs], env))
                    key = (model, threads, batch, optimizer)
                    if has_torch and len(torch_results.get(key, [])) < repeats:
                        torch_results.setdefault(key, []).append(measure(
                            [sys.executable, os.path.join(HERE, "torch_mlp.py"), "--model", model, "--batch",
                             str(batch), "--optimizer", optimizer, "--threads", str(threads), "--epochs", epochs],
                            env))
                floor = None
                if threads == 1:
                    products_ms = batch / statistics.median(r["limit_samples_per_second"] for r in runs["own"]) * 1e3
                    update_ms = statistics.median(r["update_ms"] for r in runs["update"])
                    floor = {"samples_per_second": batch / (products_ms + update_ms) * 1e3, "products_ms": products_ms,
                             "update_ms": update_ms,
                             "own_operands_gflops": statistics.median(r["gflops"] for r in runs["own"])}
                row = {"model": model, "threads": threads, "batch": batch, "optimizer": optimizer, "floor": floor,
                       "exact": median_of(runs["exact"]), "fast": median_of(runs["fast"]),
                       "torch": median_of(torch_results[(model, threads, batch, optimizer)]) if has_torch else None,
                       "limit": limits[best], "limit_library": best, "limits": limits,
                       "sgemm_gflops": limit["gflops"], "onednn_gflops": onednn["gflops"]}
                section["rows"].append(row)
                print_row(row, first=len(section["rows"]) == 1, env_label=env_label, kernel=limit["kernel"],
                          onednn=onednn["gemm"])
        xor = median_of([measure([BENCH, "xor", "--repeats", "3" if a.smoke else "20"], env)
                         for _ in range(repeats)], key="us_per_epoch")
        numpy = median_of([measure([sys.executable, os.path.join(HERE, "seed_xor.py")], env)
                           for _ in range(repeats)], key="us_per_epoch") if not a.smoke else None
        section["xor"] = {"shardtrain_us_per_epoch": xor, "numpy_us_per_epoch": numpy}
        print(f"  XOR (seed network, 1000 epochs): shardtrain {xor['value']:.2f} µs/epoch"
              + (f", the seed's numpy program {numpy['value']:.2f} µs/epoch → {numpy['value'] / xor['value']:.1f}× "
                 f"faster (peak RSS {xor['peak_rss_mib']:.0f} vs {numpy['peak_rss_mib']:.0f} MiB)" if numpy else ""))
        report["environments"].append(section)
    if a.json and not a.smoke:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"\nwrote {a.json}")


def print_row(row, first, env_label, kernel, onednn):
    if first:
        print(f"\nBLAS {env_label}: products on {onednn} (OpenBLAS kernel {kernel}); the limit is the faster "
              f"library's sgemm on the step's products (O: OpenBLAS, D: oneDNN); the floor (one thread) is those "
              f"products on a step's own operands plus one optimizer update")
        print(f"{'model':>9} {'thr':>3} {'batch':>5} {'opt':>4} | {'exact':>7} {'fast':>7} {'torch':>7} | {'ex/tor':>6} "
              f"{'fa/tor':>6} | {'limit':>8} {'ex/lim':>6} {'fa/lim':>6} | {'floor':>7} {'fa/flo':>6} | {'ex/fa':>5} | "
              f"RSS MiB ex/fa/torch")
    torch = row["torch"]["value"] if row["torch"] else None
    floor = row["floor"]["samples_per_second"] if row["floor"] else None
    cell = lambda v: f"{v:7.0f}" if v else "    n/a"
    ratio = lambda x, y: f"{x / y:6.2f}" if x and y else "   n/a"
    rss = f"{row['exact']['peak_rss_mib']:.0f}/{row['fast']['peak_rss_mib']:.0f}/" + (
        f"{row['torch']['peak_rss_mib']:.0f}" if torch else "n/a")
    print(f"{row['model']:>9} {row['threads']:>3} {row['batch']:>5} {row['optimizer']:>4} | {cell(row['exact']['value'])} "
          f"{cell(row['fast']['value'])} {cell(torch)} | {ratio(row['exact']['value'], torch)} "
          f"{ratio(row['fast']['value'], torch)} | {cell(row['limit'])}{'O' if row['limit_library'] == 'OpenBLAS' else 'D'} {ratio(row['exact']['value'], row['limit'])} "
          f"{ratio(row['fast']['value'], row['limit'])} | {cell(floor)} {ratio(row['fast']['value'], floor)} | "
          f"{row['exact']['value'] / row['fast']['value']:5.2f} | {rss}",
          flush=True)


if __name__ == "__main__":
    main()
