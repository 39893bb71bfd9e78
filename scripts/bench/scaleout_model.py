#!/usr/bin/env python3
"""Bytes and time per step on paper, for N worker hosts of one link rate each (the coordinator's too), for three ways
to reduce: the star (every result to the coordinator, every worker's weights from it), the sharded layout (the N workers and the
coordinator each sum a 1/(N + 1) range of the parameters and send its mean to the N others; every worker and the
coordinator, which keeps the run's state for checkpoints and hand-overs, apply every mean) and a ring all-reduce
(DDP's gloo). Costs are the measured ones named in the flags' help: bytes a parameter of a result, ns a parameter to pack,
unpack, sum and update, the link's per-message latency. Only the exchange is modelled, not the computing, which is
the same in all three; transfers in both directions overlap (full duplex), and nothing overlaps with computing.
Prints a Markdown table; writes nothing."""
import argparse


def star(n, p, a):
    down, up = 4 * p * n, a.result_bytes * p * n  # the coordinator's link, each way
    cpu = n * p * a.unpack_ns + n * p * a.sum_ns + p * a.update_ns + p * a.pack_ns  # the coordinator's, after the last result
    seconds = max(down, up) * 8 / a.rate + 2 * a.latency_us * 1e-6 + cpu * 1e-9
    return {"busiest": down + up, "seconds": seconds, "coordinator": down + up}


def sharded(n, p, a):
    share = 1 / (n + 1)  # each of the n workers' and the coordinator's range
    tx = n * share * (a.result_bytes + 4) * p  # results out to the n other owners; its range's mean to the n others
    rx = (n - 1) * share * a.result_bytes * p + n * share * 4 * p  # n - 1 workers' results for its range; n others' means
    cpu = p * a.pack_ns + n * share * p * (a.unpack_ns + a.sum_ns) + p * a.update_ns  # a worker's: its result, its range from n workers, every update
    seconds = max(tx, rx) * 8 / a.rate + 3 * a.latency_us * 1e-6 + cpu * 1e-9
    coordinator = n * share * (a.result_bytes + 4) * p + n * share * 4 * p  # its range's results in, the others' means in, its mean out
    return {"busiest": max(tx + rx, coordinator), "seconds": seconds, "coordinator": coordinator}


def sharded_without_copy(n, p, a):
    """The next design step: the coordinator keeps no copy each step (no worker sends it means), so its downlink
    carries only its range's results, and its range is 2 / (n + 2) of the parameters, which loads its link as much as
    a worker's in fast mode."""
    share = 2 / (n + 2)
    mine = (1 - share) / n  # each worker's range
    tx = (1 - mine) * a.result_bytes * p + (n - 1) * mine * 4 * p  # results out; its range's mean to n - 1 workers
    rx = (n - 1) * mine * a.result_bytes * p + (1 - mine) * 4 * p  # n - 1 workers' results for its range; the others' means
    cpu = p * a.pack_ns + n * mine * p * (a.unpack_ns + a.sum_ns) + p * a.update_ns
    seconds = max(tx, rx) * 8 / a.rate + 3 * a.latency_us * 1e-6 + cpu * 1e-9
    coordinator = n * share * (a.result_bytes + 4) * p
    return {"busiest": max(tx + rx, coordinator), "seconds": seconds, "coordinator": coordinator}


def ring(n, p, a):
    each_way = 2 * (n - 1) / n * 4 * p  # reduce-scatter then all-gather, Float32
    cpu = p * a.update_ns + (n - 1) / n * p * 1.0  # each rank adds what it receives (~1 ns a parameter) and updates all
    seconds = each_way * 8 / a.rate + 2 * (n - 1) * a.latency_us * 1e-6 + cpu * 1e-9
    return {"busiest": 2 * each_way, "seconds": seconds, "coordinator": 0}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parameters", type=int, default=1_863_690, help="mnist-wide's 1,863,690 by default")
    p.add_argument("--rate", type=float, default=1e9, help="every link's rate, bits/s")
    p.add_argument("--result-bytes", type=float, default=5.9,
                   help="bytes a parameter of one worker's result: 5.9 is a packed exact sum of four micro-shards "
                   "(shardtrain-bench packing, mnist-mlp at step 160), 4 a fast sum")
    p.add_argument("--pack-ns", type=float, default=5.3, help="ns a parameter to pack (shardtrain-bench packing)")
    p.add_argument("--unpack-ns", type=float, default=4.4, help="ns a parameter to unpack (shardtrain-bench packing)")
    p.add_argument("--sum-ns", type=float, default=1.5, help="ns a parameter to add one result into the mean")
    p.add_argument("--update-ns", type=float, default=1.5, help="ns a parameter for SGD momentum's update")
    p.add_argument("--latency-us", type=float, default=100, help="one message's latency on the link, µs")
    p.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64, 128, 256])
    a = p.parse_args()
    model = 4 * a.parameters
    print(f"{a.parameters:,} parameters, {a.rate / 1e9:g} Gbit/s links, results of {a.result_bytes} bytes a parameter; "
          "busiest host's bytes per step (sent + received) in model-sizes, and ms per step of exchange")
    print("| N | star: busiest | star: ms | sharded: busiest | sharded: ms | ring: busiest | ring: ms | sharded: coordinator "
          "| without copy: busiest | without copy: ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in a.workers:
        s, h, r = star(n, a.parameters, a), sharded(n, a.parameters, a), ring(n, a.parameters, a)
        w = sharded_without_copy(n, a.parameters, a)
        print(f"| {n} | {s['busiest'] / model:.1f} | {s['seconds'] * 1e3:,.0f} | {h['busiest'] / model:.2f} | "
              f"{h['seconds'] * 1e3:,.0f} | {r['busiest'] / model:.2f} | {r['seconds'] * 1e3:,.0f} | "
              f"{h['coordinator'] / model:.1f} | {w['busiest'] / model:.2f} | {w['seconds'] * 1e3:,.0f} |")


if __name__ == "__main__":
    main()
