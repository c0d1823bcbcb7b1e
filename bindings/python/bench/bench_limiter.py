#!/usr/bin/env python3
"""Benchmark of berth.Limiter under asyncio, side by side with asyncio.Semaphore
and anyio.CapacityLimiter, in the same process and run.

limiter_async_python: N=10000 tasks, started together with asyncio.gather,
  each doing `async with X: await asyncio.sleep(0)`, with M=100 permits
  (X = berth.Limiter(100), used as `async with limiter:`); ns per task,
  wall time of the whole gather / N. Baseline: the same with
  X = asyncio.Semaphore(100). ratio = baseline / berth (so >= 0.5 means berth
  is within 2x of asyncio.Semaphore; > 1 means faster).
limiter_async_python_vs_anyio: the same, baseline X = anyio.CapacityLimiter(100)
  (asyncio backend). Skipped, with a note, if anyio is not installed.
limiter_async_python_uncontended: one task doing `async with X: pass` in a
  loop, capacity 1000 (never reached): ns per acquire + release.
  Baseline: asyncio.Semaphore(1000).
limiter_shared_async_python: the contended workload of limiter_async_python
  with X = berth.SharedLimiter (one handle, `async with limiter:`; a region in
  /dev/shm, unlinked at the end). Baseline: the in-process berth.Limiter(100)
  of the same run, so ratio = Limiter / SharedLimiter (1 = no cost for
  sharing the capacity between processes; < 1 = what sharing costs).
limiter_shared_async_python_uncontended: the uncontended loop of
  limiter_async_python_uncontended with X = berth.SharedLimiter(1000).
  Baseline: berth.Limiter(1000), same run.

The implementations take turns, round after round; each figure is the median
of its rounds. The cyclic GC is disabled while timing (collected between runs).

Usage: bench_limiter.py --out <path> [--quick]
Writes a JSON array of the records to --out and prints them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import berth

try:
    import anyio
except ImportError:  # pragma: no cover - depends on the environment
    anyio = None

N, M = 10_000, 100
UNCONTENDED_CAPACITY = 1000  # never reached: one task, one permit at a time (as the C++ record)


def contended_ns(make: Callable[[], Any], n: int = N) -> float:
    """ns per task: n tasks doing `async with X: await asyncio.sleep(0)`."""

    async def main() -> float:
        cm = make()  # inside the loop: anyio picks its backend here
        sleep = asyncio.sleep

        async def task() -> None:
            async with cm:
                await sleep(0)

        t0 = time.perf_counter_ns()
        await asyncio.gather(*[task() for _ in range(n)])
        return (time.perf_counter_ns() - t0) / n

    gc.collect()
    return asyncio.run(main())


def uncontended_ns(make: Callable[[], Any], iterations: int) -> float:
    """ns per `async with X: pass` with nobody else around."""

    async def main() -> float:
        cm = make()
        for _ in range(1000):  # warm-up
            async with cm:
                pass
        t0 = time.perf_counter_ns()
        for _ in range(iterations):
            async with cm:
                pass
        return (time.perf_counter_ns() - t0) / iterations

    gc.collect()
    return asyncio.run(main())


@contextlib.contextmanager
def shared_limiters() -> Iterator[tuple[berth.SharedLimiter, berth.SharedLimiter]]:
    """The shared limiters of the run (capacity M, and UNCONTENDED_CAPACITY),
    opened once: a run leaves them as it found them (checked)."""
    base = f"bench-limiter-{os.getpid()}"
    made: list[berth.SharedLimiter] = []
    try:
        for suffix, capacity in (("", M), ("-u", UNCONTENDED_CAPACITY)):
            made.append(berth.SharedLimiter(base + suffix, capacity))
        yield made[0], made[1]
    finally:
        for lim in made:
            lim.close()
            berth.SharedLimiter.unlink(lim.name)


def check_berth_semantics(shared: berth.SharedLimiter) -> None:
    """The figure is only meaningful if the run really contended and finished clean."""
    for lim in (berth.Limiter(M), shared):
        check_one(lim)


def check_one(lim: berth.Limiter | berth.SharedLimiter) -> None:
    before = lim.stats().granted
    peak = 0
    held = 0

    async def main() -> None:
        async def task() -> None:
            nonlocal peak, held
            async with lim:
                held += 1
                peak = max(peak, held)
                await asyncio.sleep(0)
                held -= 1

        await asyncio.gather(*[task() for _ in range(N)])

    asyncio.run(main())
    s = lim.stats()
    assert peak == M and (s.in_use, s.waiting, s.granted - before) == (0, 0, N), (peak, s)


def bench(rounds: int, uncontended_iters: int, shared: berth.SharedLimiter,
          shared_uncontended: berth.SharedLimiter) -> dict[str, float]:
    contenders: dict[str, Callable[[], Any]] = {
        "berth": lambda: berth.Limiter(M),
        "asyncio": lambda: asyncio.Semaphore(M),
        "berth_shared": lambda: shared,
    }
    if anyio is not None:
        contenders["anyio"] = lambda: anyio.CapacityLimiter(M)
    uncontenders: dict[str, Callable[[], Any]] = {
        "berth": lambda: berth.Limiter(UNCONTENDED_CAPACITY),
        "asyncio": lambda: asyncio.Semaphore(UNCONTENDED_CAPACITY),
        "berth_shared": lambda: shared_uncontended,
    }
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    samples.update({f"{k}_uncontended": [] for k in uncontenders})
    for name, make in contenders.items():  # warm-up
        contended_ns(make, N // 10)
    gc.disable()
    try:
        for _ in range(rounds):
            for name, make in contenders.items():
                samples[name].append(contended_ns(make))
            for name, make in uncontenders.items():
                samples[f"{name}_uncontended"].append(uncontended_ns(make, uncontended_iters))
    finally:
        gc.enable()
    for lim in (shared, shared_uncontended):  # every round left them clean
        s = lim.stats()
        assert (s.in_use, s.waiting, s.holders) == (0, 0, 0), s
    return {k: statistics.median(v) for k, v in samples.items()}


def record(name: str, berth_ns: float, baseline_ns: float, n: int, m: int) -> dict[str, Any]:
    return {
        "name": name,
        "n": n,
        "m": m,
        "threads": 1,
        "berth_ns_per_op": round(berth_ns, 1),
        "baseline_ns_per_op": round(baseline_ns, 1),
        "ratio": round(baseline_ns / berth_ns, 4),
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="where to write the JSON array")
    ap.add_argument("--quick", action="store_true", help="short smoke run")
    args = ap.parse_args(argv)

    rounds, iters = (3, 20_000) if args.quick else (9, 200_000)
    with shared_limiters() as (shared, shared_uncontended):
        check_berth_semantics(shared)
        r = bench(rounds, iters, shared, shared_uncontended)

    records = [record("limiter_async_python", r["berth"], r["asyncio"], N, M)]
    if "anyio" in r:
        records.append(record("limiter_async_python_vs_anyio", r["berth"], r["anyio"], N, M))
    else:
        print("note: anyio is not installed; limiter_async_python_vs_anyio skipped "
              "(pip install anyio to include it)", file=sys.stderr)
    records.append(record("limiter_async_python_uncontended", r["berth_uncontended"],
                          r["asyncio_uncontended"], 1, UNCONTENDED_CAPACITY))
    records.append(record("limiter_shared_async_python", r["berth_shared"], r["berth"], N, M))
    records.append(record("limiter_shared_async_python_uncontended", r["berth_shared_uncontended"],
                          r["berth_uncontended"], 1, UNCONTENDED_CAPACITY))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(records, indent=1) + "\n")
    print(f"{N} tasks, {M} permits, `async with X: await asyncio.sleep(0)`, ns per task:")
    print(f"  berth.Limiter            {r['berth']:9.1f}")
    print(f"  asyncio.Semaphore        {r['asyncio']:9.1f}   asyncio/berth = {r['asyncio'] / r['berth']:.2f}")
    if "anyio" in r:
        print(f"  anyio.CapacityLimiter    {r['anyio']:9.1f}   anyio/berth = {r['anyio'] / r['berth']:.2f}")
    print(f"  berth.SharedLimiter      {r['berth_shared']:9.1f}   "
          f"Limiter/SharedLimiter = {r['berth'] / r['berth_shared']:.2f}")
    print("uncontended `async with X: pass`, ns per acquire + release:")
    print(f"  berth.Limiter            {r['berth_uncontended']:9.1f}")
    print(f"  asyncio.Semaphore        {r['asyncio_uncontended']:9.1f}   "
          f"asyncio/berth = {r['asyncio_uncontended'] / r['berth_uncontended']:.2f}")
    print(f"  berth.SharedLimiter      {r['berth_shared_uncontended']:9.1f}   "
          f"Limiter/SharedLimiter = {r['berth_uncontended'] / r['berth_shared_uncontended']:.2f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
