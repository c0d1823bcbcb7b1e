#!/usr/bin/env python3
"""Berth's Cache against what a Python sandbox server keeps instead: an
informer cache of plain dicts (OpenSandbox's WorkloadInformer: one dict per
object, get = a dict lookup, a label-selector list = a scan of every object
matched with its own minimal selector matcher). Same objects, same run.

Workload: N=100000 objects over 100 namespaces, ~1 KB JSON payloads, labels
app (50 values), tier (4), team (10: "team=t1" selects 10%).

Records (JSON, as the C++ benchmarks write them; ratio = baseline / berth):
  cache_get_python     cache.get(ns, name) against dict.get((ns, name)) of
                       prebuilt objects, the same keys in the same order.
                       Target (issue 12): Berth within 2x, ratio >= 0.5.
  cache_list10_python  list("", "team=t1") and read every object's name,
                       labels and payload, against the informer's scan of
                       the same selector reading the same fields.
                       Target: ratio >= 5.

Usage: bench_informer.py --out <path> [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import berth

N, M = 100_000, 100
SELECTOR = "team=t1"


def spec(i: int) -> tuple[str, str, int, dict[str, str], bytes]:
    ns, name = f"ns-{i % M}", f"sb-{i}"
    labels = {"app": f"app-{i % 50}", "tier": "abcd"[i % 4], "team": f"t{i % 10}"}
    body = {"metadata": {"namespace": ns, "name": name, "labels": labels},
            "status": {"phase": "Running", "podIP": f"10.0.{i % 250}.{i % 200}", "message": "x" * 900}}
    return ns, name, i + 1, labels, json.dumps(body).encode()


# ---- the baseline: an informer of dicts, as OpenSandbox's server keeps it ----------

def parse_selector(selector: str) -> list[tuple[str, str, str | None]]:
    """OpenSandbox's minimal parser: key, key=value, key==value, comma-joined."""
    terms: list[tuple[str, str, str | None]] = []
    for raw in selector.split(","):
        clause = raw.strip()
        if "==" in clause:
            key, _, value = clause.partition("==")
        elif "=" in clause:
            key, _, value = clause.partition("=")
        else:
            terms.append((clause, "exists", None))
            continue
        terms.append((key.strip(), "eq", value.strip()))
    return terms


def matches(labels: Mapping[str, str], terms: list[tuple[str, str, str | None]]) -> bool:
    for key, op, expected in terms:
        if op == "exists":
            if key not in labels:
                return False
        elif labels.get(key) != expected:
            return False
    return True


class Informer:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self._cache = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in items}

    def get(self, key: tuple[str, str]) -> dict[str, Any] | None:
        return self._cache.get(key)

    def list(self, selector: str) -> list[dict[str, Any]]:
        terms = parse_selector(selector)
        return [o for o in self._cache.values() if matches(o["metadata"].get("labels") or {}, terms)]


# ---- timing -------------------------------------------------------------------------

def best_of(rounds: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(rounds))


def time_gets_berth(cache: berth.Cache, keys: list[tuple[str, str]]) -> float:
    get = cache.get
    t0 = time.perf_counter_ns()
    for ns, name in keys:
        get(ns, name)
    return (time.perf_counter_ns() - t0) / len(keys)


def time_gets_dict(informer: Informer, keys: list[tuple[str, str]]) -> float:
    get = informer._cache.get
    t0 = time.perf_counter_ns()
    for ns, name in keys:
        get((ns, name))
    return (time.perf_counter_ns() - t0) / len(keys)


def time_list_berth(cache: berth.Cache, selector: berth.Selector) -> tuple[float, int]:
    t0 = time.perf_counter_ns()
    sink = 0
    for o in cache.list("", selector):
        sink += len(o.name) + len(o.labels) + len(o.payload)
    return float(time.perf_counter_ns() - t0), sink


def time_list_informer(informer: Informer) -> tuple[float, int]:
    t0 = time.perf_counter_ns()
    sink = 0
    for o in informer.list(SELECTOR):
        md = o["metadata"]
        sink += len(md["name"]) + len(md["labels"]) + len(o["_raw"])
    return float(time.perf_counter_ns() - t0), sink


def record(name: str, n: int, berth_ns: float, base_ns: float) -> dict[str, Any]:
    return {"name": name, "n": n, "m": M, "threads": 1, "berth_ns_per_op": berth_ns,
            "baseline_ns_per_op": base_ns, "ratio": base_ns / berth_ns}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    rounds = 3 if args.quick else 7

    specs = [spec(i) for i in range(N)]
    items = []
    for ns, name, rv, labels, payload in specs:
        item = json.loads(payload)
        item["metadata"]["resourceVersion"] = str(rv)
        item["_raw"] = payload  # what the informer's user reads as "the payload"
        items.append(item)
    informer = Informer(items)
    cache = berth.Cache()
    cache.replace(specs, N)
    selector = berth.Selector(SELECTOR)

    # Gets: 100k keys in a shuffled order, identical for both.
    order = [(i * 7919) % N for i in range(N)]
    keys = [(specs[i][0], specs[i][1]) for i in order]
    assert all(cache.get(ns, nm) is not None for ns, nm in keys[:100])
    gc.collect()
    g_berth = best_of(rounds, lambda: time_gets_berth(cache, keys))
    g_dict = best_of(rounds, lambda: time_gets_dict(informer, keys))

    # 10% list and read.
    b_ns, b_sink = time_list_berth(cache, selector)
    i_ns, i_sink = time_list_informer(informer)
    assert b_sink == i_sink, (b_sink, i_sink)
    l_berth = best_of(rounds, lambda: time_list_berth(cache, selector)[0])
    l_inf = best_of(rounds, lambda: time_list_informer(informer)[0])
    listed = len(cache.list("", selector))
    assert listed == N // 10

    records = [record("cache_get_python", N, g_berth, g_dict),
               record("cache_list10_python", N, l_berth, l_inf)]
    Path(args.out).write_text(json.dumps(records, indent=1) + "\n")
    for r in records:
        print(f"{r['name']:<22} n={r['n']}  berth {r['berth_ns_per_op']:>12.1f} ns  "
              f"informer {r['baseline_ns_per_op']:>12.1f} ns  x{r['ratio']:.2f}")
    cache.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
