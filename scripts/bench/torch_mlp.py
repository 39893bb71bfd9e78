#!/usr/bin/env python3
"""PyTorch CPU peer for scripts/bench.sh: mnist-mlp (784→512 ReLU→256 ReLU→10) or the wide net (1024→1024 ReLU→512
ReLU→100), cross-entropy, training throughput.

Prints one JSON object: samples_per_second (median over measured epochs of 8 steps, after one warm-up epoch).
"""
import argparse
import json
import statistics
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["mnist-mlp", "wide"], default="mnist-mlp")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=6)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1234)
    inputs, hidden1, hidden2, classes = (784, 512, 256, 10) if a.model == "mnist-mlp" else (1024, 1024, 512, 100)
    model = torch.nn.Sequential(torch.nn.Linear(inputs, hidden1), torch.nn.ReLU(), torch.nn.Linear(hidden1, hidden2),
                                torch.nn.ReLU(), torch.nn.Linear(hidden2, classes))
    opt = (torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if a.optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=0.001))
    loss_fn = torch.nn.CrossEntropyLoss()
    steps = 8
    x = torch.rand(a.batch * steps, inputs) * 2 - 1
    y = torch.randint(0, classes, (a.batch * steps,))
    rates = []
    for _ in range(a.epochs + 1):
        order = torch.randperm(x.shape[0])
        start = time.perf_counter()
        for s in range(steps):
            index = order[s * a.batch:(s + 1) * a.batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[index]), y[index])
            loss.backward()
            opt.step()
        rates.append(a.batch * steps / (time.perf_counter() - start))
    print(json.dumps({"samples_per_second": statistics.median(rates[1:]), "model": a.model, "batch": a.batch,
                      "optimizer": a.optimizer, "threads": a.threads, "torch": torch.__version__,
                      "torch_blas": torch.backends.mkldnn.is_available() and "mkldnn" or "native"}))


if __name__ == "__main__":
    main()
