#!/usr/bin/env python3
"""The seed tutorial's numpy XOR program (training loop only, no printing), timed: µs per epoch over 1000 epochs.

Copied from ../shared/seed/training-deep-neural-networks.txt so the benchmark runs it as the tutorial wrote it.
"""
import json
import time

import numpy as np


def run():
    np.random.seed(42)
    W1 = np.random.randn(2, 3) * 0.5
    b1 = np.zeros(3)
    W2 = np.random.randn(3, 1) * 0.5
    b2 = np.zeros(1)

    def relu(z): return np.maximum(0, z)
    def relu_grad(z): return (z > 0).astype(float)
    def sigmoid(z): return 1 / (1 + np.exp(-z))

    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    y = np.array([[0], [1], [1], [0]], dtype=float)
    lr = 0.5
    for epoch in range(1000):
        z1 = X @ W1 + b1
        a1 = relu(z1)
        z2 = a1 @ W2 + b2
        a2 = sigmoid(z2)
        loss = np.mean((a2 - y) ** 2)
        dL_da2 = 2 * (a2 - y) / len(X)
        da2_dz2 = a2 * (1 - a2)
        dz2 = dL_da2 * da2_dz2
        dW2 = a1.T @ dz2
        db2 = np.sum(dz2, axis=0)
        da1 = dz2 @ W2.T
        dz1 = da1 * relu_grad(z1)
        dW1 = X.T @ dz1
        db1 = np.sum(dz1, axis=0)
        W2 -= lr * dW2; b2 -= lr * db2
        W1 -= lr * dW1; b1 -= lr * db1
    return loss


best = float("inf")
for _ in range(5):
    start = time.perf_counter()
    run()
    best = min(best, (time.perf_counter() - start) / 1000 * 1e6)
print(json.dumps({"us_per_epoch": best, "epochs": 1000, "numpy": np.__version__}))
