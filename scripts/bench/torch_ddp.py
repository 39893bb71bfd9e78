#!/usr/bin/env python3
"""PyTorch DistributedDataParallel peer for scripts/bench-scaling.sh (launched with torchrun, gloo on 127.0.0.1,
one thread per rank): mnist-mlp (or --hidden widths) at a global batch split over the ranks. Rank 0 prints JSON samples_per_second."""
import argparse
import json
import os
import statistics
import time

import torch
import torch.distributed as dist


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=256, help="global batch")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--hidden", type=int, nargs="+", default=[512, 256], help="hidden layers' widths (ReLU)")
    p.add_argument("--profile", metavar="FOLDER",
                   help="run under torch.profiler (CPU) and write each rank's Chrome trace there after the last step")
    a = p.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(1234)
    widths, layers = [784] + a.hidden, []
    for inputs, outputs in zip(widths, widths[1:]):
        layers += [torch.nn.Linear(inputs, outputs), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(widths[-1], 10))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = (torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9) if a.optimizer == "sgd"
           else torch.optim.Adam(ddp.parameters(), lr=0.001))
    local = a.batch // world
    x = torch.rand(local * 8, 784) * 2 - 1
    y = torch.randint(0, 10, (local * 8,))
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    profiler = None
    if a.profile:
        profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
        profiler.__enter__()
    for step in range(a.steps + 5):
        s = step % 8
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(ddp(x[s * local:(s + 1) * local]), y[s * local:(s + 1) * local]).backward()
        opt.step()
        times.append(time.perf_counter() - start)
    if profiler is not None:
        profiler.__exit__(None, None, None)
        profiler.export_chrome_trace(os.path.join(a.profile, f"rank{rank}.json"))
    if rank == 0:
        print(json.dumps({"samples_per_second": a.batch / statistics.median(times[5:]), "world": world,
                          "batch": a.batch, "optimizer": a.optimizer}), flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
