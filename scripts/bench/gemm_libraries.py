#!/usr/bin/env python3
"""Runs the GEMM library comparison (called by scripts/bench-gemm.sh): sgemm GFLOP/s on one thread on a training
step's products (forward X·Wᵀ, weight gradient dZᵀ·X, input gradient dZ·W) for mnist-mlp at 256 rows (a fast step)
and 128 rows (an exact micro-shard) and the wide net at 128 rows, for OpenBLAS (its kernel as loaded), BLIS and
oneDNN (`dnnl_sgemm`, and the matmul primitives fast mode plans), with PyTorch's own GEMMs as the peer; interleaved repeats, medians. Prints a table."""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = [("mnist-mlp", 256), ("mnist-mlp", 128), ("wide", 128)]
WIDTHS = {"mnist-mlp": [784, 512, 256, 10], "wide": [1024, 1024, 512, 100]}

TORCH = """
import sys, time, torch
torch.set_num_threads(1)
widths, rows, seconds = {widths}, {rows}, {seconds}
x = torch.rand(rows, 1024); w = torch.rand(1024, 1024)
def step():
    for l in range(3):
        i, o = widths[l], widths[l + 1]
        x[:, :i] @ w[:o, :i].t()
        x[:, :o].t() @ x[:, :i]
        if l > 0: x[:, :o] @ w[:o, :i]
flops = sum(2.0 * rows * widths[l] * widths[l + 1] * (3 if l > 0 else 2) for l in range(3))
for _ in range(50): step()
n, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    step(); n += 1
print(flops * n / (time.perf_counter() - start) / 1e9)
"""


def torch_gflops(model, rows, seconds):
    code = TORCH.format(widths=WIDTHS[model], rows=rows, seconds=seconds)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    return float(run.stdout.strip()) if run.returncode == 0 else None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("binary")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=0.7)
    p.add_argument("--smoke", action="store_true", help="one short run, no PyTorch")
    a = p.parse_args()
    if a.smoke:
        a.repeats, a.seconds = 1, 0.05
    env = dict(os.environ, OMP_NUM_THREADS="1", BLIS_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    results, kernels, allocations = {}, {}, {}
    has_torch = not a.smoke and subprocess.run([sys.executable, "-c", "import torch"],
                                               capture_output=True).returncode == 0
    for _ in range(a.repeats):
        for model, rows in SHAPES:
            run = subprocess.run([a.binary, model, str(rows), str(a.seconds)], capture_output=True, text=True, env=env,
                                 check=True)
            for line in run.stdout.splitlines():
                row = json.loads(line)
                if "gflops" not in row:
                    continue
                results.setdefault((row["library"], model, rows), []).append(row["gflops"])
                kernels[row["library"]] = row["kernel"]
                allocations[row["library"]] = row["allocations_per_call"]
            if has_torch:
                value = torch_gflops(model, rows, a.seconds)
                if value:
                    results.setdefault(("PyTorch", model, rows), []).append(value)
    libraries = [name for name in ["OpenBLAS", "BLIS", "oneDNN", "oneDNN matmul", "PyTorch"] if any(k[0] == name for k in results)]
    print("sgemm GFLOP/s, 1 thread, medians of %d interleaved runs (ratio to OpenBLAS)" % a.repeats)
    print(f"{'library':>13} {'kernel':>24} {'allocs/call':>11} | " + " | ".join(f"{m} {r:>3} rows" for m, r in SHAPES))
    for name in libraries:
        cells = []
        for model, rows in SHAPES:
            values = results.get((name, model, rows))
            base = results.get(("OpenBLAS", model, rows))
            if not values:
                cells.append(f"{'n/a':>18}")
                continue
            median = statistics.median(values)
            ratio = median / statistics.median(base) if base else float("nan")
            cells.append(f"{median:9.1f} ({ratio:4.2f})".rjust(18))
        kernel = kernels.get(name, "own (oneDNN/MKL)" if name == "PyTorch" else "")
        allocs = allocations.get(name)
        print(f"{name:>13} {kernel:>24} {allocs if allocs is not None else 'n/a':>11} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
