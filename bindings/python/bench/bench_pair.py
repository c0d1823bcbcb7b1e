#!/usr/bin/env python3
"""Benchmarks of the Python binding, side by side with their baselines.

binding_pair_python: one pop_spread + add pair (the claimed key re-added with
  the same node, so the pool stays at N keys) at N=10000 keys on M=100 nodes,
  all ready, one thread; baseline: the same pair in C++ measured by the C++
  benchmark in the same run (--cpp-ns). ratio = baseline / berth (so < 1 means
  Python is slower; the target is Python within 10x, i.e. ratio >= 0.1).
binding_add_batch_python: add_batch of 10000 new keys, per key; baseline:
  10000 single add() calls, per key.

Usage: bench_pair.py --cpp-ns <float> --out <path> [--quick]
Writes a JSON array of the two records to --out and prints them.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import berth

N, M = 10_000, 100
POOL = "bench/pool"


def keys(n: int = N, m: int = M) -> list[tuple[str, str, str, bool]]:
    return [("bench", f"sandbox-{i:06d}", f"node-{i % m:03d}", True) for i in range(n)]


def time_pairs(engine: berth.Engine, iterations: int) -> float:
    """ns per pop_spread + add pair, as a user would write the loop."""
    pop, add, pool = engine.pop_spread, engine.add, POOL
    t0 = time.perf_counter_ns()
    for _ in range(iterations):
        k = pop(pool)  # never None: the pool stays at N keys
        add(pool, k.namespace, k.name, k.node, True)  # type: ignore[union-attr]
    return (time.perf_counter_ns() - t0) / iterations


def bench_pair(rounds: int, iterations: int) -> float:
    with berth.Engine() as engine:
        engine.add_batch(POOL, keys())
        time_pairs(engine, iterations // 4)  # warm-up
        samples = [time_pairs(engine, iterations) for _ in range(rounds)]
        assert engine.stats(POOL).keys == N
    return statistics.median(samples)


def bench_add_batch(rounds: int) -> tuple[float, float]:
    """(ns per key with add_batch, ns per key with single add calls)."""
    batch = keys()
    batch_ns, single_ns = [], []
    with berth.Engine() as engine:
        for r in range(rounds + 1):  # the first round warms up
            engine.remove_pool(POOL)
            t0 = time.perf_counter_ns()
            assert engine.add_batch(POOL, batch) == N
            b = (time.perf_counter_ns() - t0) / N
            engine.remove_pool(POOL)
            add, pool = engine.add, POOL
            t0 = time.perf_counter_ns()
            for ns, name, node, ready in batch:
                add(pool, ns, name, node, ready)
            s = (time.perf_counter_ns() - t0) / N
            if r:
                batch_ns.append(b)
                single_ns.append(s)
    return statistics.median(batch_ns), statistics.median(single_ns)


def record(name: str, berth_ns: float, baseline_ns: float) -> dict[str, object]:
    return {
        "name": name,
        "n": N,
        "m": M,
        "threads": 1,
        "berth_ns_per_op": round(berth_ns, 1),
        "baseline_ns_per_op": round(baseline_ns, 1),
        "ratio": round(baseline_ns / berth_ns, 4),
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpp-ns", type=float, required=True,
                    help="ns per pop_spread+add pair of the C++ bench in this run")
    ap.add_argument("--out", type=Path, required=True, help="where to write the JSON array")
    ap.add_argument("--quick", action="store_true", help="short smoke run")
    args = ap.parse_args(argv)
    if args.cpp_ns <= 0:
        ap.error("--cpp-ns must be > 0")

    rounds, iterations = (3, 20_000) if args.quick else (7, 200_000)
    gc.disable()  # the loops allocate only short-lived tuples; keep GC pauses out
    try:
        pair_ns = bench_pair(rounds, iterations)
        batch_ns, single_ns = bench_add_batch(rounds)
    finally:
        gc.enable()

    records = [
        record("binding_pair_python", pair_ns, args.cpp_ns),
        record("binding_add_batch_python", batch_ns, single_ns),
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(records, indent=1) + "\n")
    print(f"python pop_spread+add pair: {pair_ns:8.1f} ns   C++ pair: {args.cpp_ns:8.1f} ns   "
          f"python/C++ = {pair_ns / args.cpp_ns:.2f}x (target <= 10x)")
    print(f"add_batch per key:          {batch_ns:8.1f} ns   single add per key: {single_ns:8.1f} ns   "
          f"speed-up {single_ns / batch_ns:.2f}x")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
