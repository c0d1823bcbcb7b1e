"""Several Python threads on one Engine: nothing lost, nothing duplicated, the
GIL released inside Berth, and close() guarded against calls in flight."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from conftest import POOL, drain

import berth

THREADS = 4


def run_threads(target, n: int = THREADS) -> list[BaseException]:
    """Runs target(i) in n threads started together; returns their exceptions."""
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def body(i: int) -> None:
        try:
            start.wait()
            target(i)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a worker thread hung"
    return errors


def test_concurrent_add_pop_and_put_back_lose_and_duplicate_no_key(engine):
    per_thread = 3000
    popped: list[list[tuple[str, str]]] = [[] for _ in range(THREADS)]

    def worker(t: int) -> None:
        mine = popped[t]
        batch = []
        for i in range(per_thread):
            name = f"t{t}-k{i}"
            if i % 10 == 0:
                batch.append(("ns", name, f"node-{i % 7}", i % 3 != 0))
                if len(batch) == 5:
                    engine.add_batch(POOL, batch)
                    batch = []
            else:
                engine.add(POOL, "ns", name, f"node-{(t + i) % 7}", i % 3 != 0)
            if i % 2 == 0:
                k = engine.pop_spread(POOL) if i % 4 == 0 else engine.pop_fifo(POOL)
                if k is None:
                    continue
                # Put some back; a put_back that reports True returns the key.
                if i % 6 == 0 and engine.put_back(POOL, k):
                    continue
                mine.append((k.namespace, k.name))
        if batch:
            engine.add_batch(POOL, batch)

    engine.add(POOL, "ns", "sentinel")  # create the (then empty) pool first
    engine.remove(POOL, "ns", "sentinel")
    assert run_threads(worker) == []
    rest = [(k.namespace, k.name) for k in drain(engine)]
    every = [p for lst in popped for p in lst] + rest
    expected = {("ns", f"t{t}-k{i}") for t in range(THREADS) for i in range(per_thread)}
    dupes = [k for k, c in Counter(every).items() if c > 1]
    assert dupes == []
    assert set(every) == expected
    s = engine.stats(POOL)
    assert (s.keys, s.ready_keys, s.scheduled_keys, s.nodes) == (0, 0, 0, 0)


def test_threads_on_separate_pools_do_not_interfere(engine):
    per_thread = 2000

    def worker(t: int) -> None:
        pool = f"pool-{t}"
        for i in range(per_thread):
            engine.add(pool, "ns", f"k{i}", f"n{i % 5}", True)
        for _ in range(per_thread // 2):
            assert engine.pop_spread(pool) is not None
        if t % 2 == 0:
            engine.remove_pool(pool)

    assert run_threads(worker) == []
    for t in range(THREADS):
        if t % 2 == 0:
            with pytest.raises(berth.NotFoundError):
                engine.stats(f"pool-{t}")
        else:
            assert engine.stats(f"pool-{t}").keys == per_thread // 2


def test_long_call_releases_the_gil(engine):
    # A remove_pool of a big pool runs entirely inside Berth. If the GIL were
    # held, the main thread could not run a single bytecode meanwhile.
    engine.add_batch(POOL, [("ns", f"key-{i}", f"node-{i % 100}", True) for i in range(300_000)])
    window: list[int] = []
    done = threading.Event()

    def worker() -> None:
        t0 = time.perf_counter_ns()
        engine.remove_pool(POOL)
        window.extend((t0, time.perf_counter_ns()))
        done.set()

    stamps = []
    t = threading.Thread(target=worker)
    t.start()
    while not done.is_set():
        stamps.append(time.perf_counter_ns())
    t.join()
    t0, t1 = window
    assert t1 - t0 > 5_000_000, "the call was too quick to tell; grow the pool"
    # With the GIL held, the main thread would stall for the whole call: the
    # longest gap between its stamps would span most of the window.
    points = [t0] + [s for s in stamps if t0 < s < t1] + [t1]
    longest_gap = max(b - a for a, b in zip(points, points[1:]))
    assert longest_gap < (t1 - t0) / 2, "the main thread stalled during the call: the GIL was held"


def test_close_waits_for_a_call_in_flight_then_frees():
    # The worker's remove_pool of a big pool runs for tens of milliseconds
    # inside Berth; close() from the main thread meanwhile must return only
    # after that call has, and the call must complete normally.
    for _attempt in range(5):
        e = berth.Engine()
        e.add_batch(POOL, [("ns", f"key-{i}", f"node-{i % 100}", True) for i in range(300_000)])
        result: dict[str, object] = {}
        started = threading.Event()

        def worker(eng: berth.Engine = e, out: dict[str, object] = result) -> None:
            started.set()
            try:
                out["removed"] = eng.remove_pool(POOL)
            except berth.ClosedError:
                out["removed"] = "closed first"
            out["returned_ns"] = time.perf_counter_ns()

        t = threading.Thread(target=worker)
        t.start()
        started.wait()
        time.sleep(0.005)  # let the worker enter Berth
        e.close()
        closed_ns = time.perf_counter_ns()
        assert e.closed
        with pytest.raises(berth.ClosedError):
            e.stats(POOL)
        t.join(timeout=60)
        if result["removed"] == "closed first":
            continue  # close() won the race before the call started; try again
        assert result["removed"] is True
        assert result["returned_ns"] <= closed_ns  # type: ignore[operator]
        return
    pytest.fail("the worker's call never was in flight when close() ran")


def test_closing_while_threads_hammer_the_engine_never_crashes():
    e = berth.Engine()
    e.add_batch(POOL, [("ns", f"k{i}", f"n{i % 10}", True) for i in range(1000)])
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(t: int) -> None:
        try:
            for i in range(1_000_000):
                k = e.pop_spread(POOL)
                if k is not None:
                    e.add(POOL, k.namespace, k.name, k.node, True)
                e.snapshot(POOL) if i % 50 == 0 else None
                if t == 0 and i == 200:
                    e.close()
        except berth.ClosedError:
            with lock:
                outcomes["closed"] += 1

    assert run_threads(worker) == []
    assert outcomes["closed"] == THREADS
    assert e.closed
