#!/usr/bin/env python3
"""Benchmark of the Python binding's object cache, side by side with C++.

binding_list100_python: a cache of N=10000 objects over M=100 namespaces
  ("ns-0".."ns-99", 100 each; names "obj-<i>", labels {"app": "app-<i%10>",
  "tier": "t<i%3>"}, a 256-byte payload, resourceVersion i+1) filled by one
  replace(); then one list("ns-7") (100 objects) plus reading every object's
  .name and len(.payload), as a user would write the loop. Baseline: the same
  list and reads in C++ through the C ABI, measured by the C++ benchmark in
  the same run (cache_list100_capi; pass its berth_ns_per_op as --cpp-ns).
  ratio = baseline / berth (so < 1 means Python is slower).

Usage: bench_cache.py --cpp-ns <float> --out <path> [--quick]
Writes a JSON array with the record to --out and prints it.
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
PER_NS = N // M
NAMESPACE = "ns-7"


def objects() -> list[berth.Object]:
    payload = b"p" * 256
    return [
        berth.Object(f"ns-{i // PER_NS}", f"obj-{i}", i + 1, {"app": f"app-{i % 10}", "tier": f"t{i % 3}"}, payload)
        for i in range(N)
    ]


def time_lists(cache: berth.Cache, iterations: int) -> float:
    """ns per list("ns-7") plus reading each object's name and payload length."""
    lst_fn, ns = cache.list, NAMESPACE
    sink = 0
    t0 = time.perf_counter_ns()
    for _ in range(iterations):
        for o in lst_fn(ns):
            sink += len(o.name) + len(o.payload)
    elapsed = time.perf_counter_ns() - t0
    assert sink == iterations * sum(len(f"obj-{i}") + 256 for i in range(7 * PER_NS, 8 * PER_NS))
    return elapsed / iterations


def bench_list(rounds: int, iterations: int) -> float:
    with berth.Cache() as cache:
        cache.replace(objects(), N)
        assert len(cache.list(NAMESPACE)) == PER_NS
        time_lists(cache, max(1, iterations // 4))  # warm-up
        return statistics.median(time_lists(cache, iterations) for _ in range(rounds))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpp-ns", type=float, required=True,
                    help="ns per list of 100 (cache_list100_capi) of the C++ bench in this run")
    ap.add_argument("--out", type=Path, required=True, help="where to write the JSON array")
    ap.add_argument("--quick", action="store_true", help="short smoke run")
    args = ap.parse_args(argv)
    if args.cpp_ns <= 0:
        ap.error("--cpp-ns must be > 0")

    rounds, iterations = (3, 500) if args.quick else (7, 5_000)
    gc.disable()  # the loop allocates only short-lived views; keep GC pauses out
    try:
        list_ns = bench_list(rounds, iterations)
    finally:
        gc.enable()

    records = [
        {
            "name": "binding_list100_python",
            "n": N,
            "m": PER_NS,
            "threads": 1,
            "berth_ns_per_op": round(list_ns, 1),
            "baseline_ns_per_op": round(args.cpp_ns, 1),
            "ratio": round(args.cpp_ns / list_ns, 4),
        }
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(records, indent=1) + "\n")
    print(f"python list(ns) of {PER_NS} + name/len(payload): {list_ns:9.1f} ns   "
          f"C++: {args.cpp_ns:9.1f} ns   python/C++ = {list_ns / args.cpp_ns:.2f}x")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
