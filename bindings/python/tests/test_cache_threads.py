"""Several Python threads on one Cache: readers see consistent objects while
writers write, the final state is exactly what was written, and close() of a
cache or a selector in use by other threads is safe."""

from __future__ import annotations

import itertools
import random
import threading
import time

import pytest
from conftest import rows, run_threads

import berth

NAMESPACES = ["ns-0", "ns-1", "ns-2", "ns-3"]


def payload(ns: str, name: str, rv: int) -> bytes:
    return f"{ns}/{name}@{rv}".encode()


def labels(writer: int, rv: int) -> dict[str, str]:
    return {"writer": str(writer), "parity": str(rv % 2), "app": f"app-{rv % 3}"}


def check_object(o: berth.ObjectView, sel: berth.Selector | None, ns: str) -> None:
    """One object read from a list: internally consistent and as selected."""
    assert not ns or o.namespace == ns
    lab = o.labels
    if sel is not None:
        assert sel.matches(lab), (str(sel), lab)
    if o.name.startswith("w"):
        assert lab == labels(int(lab["writer"]), o.resource_version)
    assert bytes(o.payload) == payload(o.namespace, o.name, o.resource_version)


def test_readers_and_writers_concurrently_then_a_consistent_final_state(synced):
    rv = itertools.count(1000)  # next() is atomic under the GIL: versions are unique
    initial = [
        (ns, f"init-{i}", i + 1, {"app": f"app-{i % 3}", "parity": str(i % 2)}, payload(ns, f"init-{i}", i + 1))
        for i, ns in enumerate(NAMESPACES * 25)
    ]
    synced.replace(initial, 999)
    writers, readers, rounds = 3, 3, 1500
    models: list[dict[tuple[str, str], tuple]] = [{} for _ in range(writers)]
    done = threading.Event()
    reads = [0] * readers
    selectors = [berth.Selector(t) for t in ("parity=0", "app in (app-1,app-2)", "writer,parity!=1", "")]

    def writer(t: int) -> None:
        rng = random.Random(t)
        model = models[t]
        batch: list[tuple] = []
        for i in range(rounds):
            ns, name = rng.choice(NAMESPACES), f"w{t}-{rng.randint(0, 60)}"
            v = next(rv)
            r = rng.random()
            if r < 0.2:
                synced.delete(ns, name, v)
                model.pop((ns, name), None)
            elif r < 0.6:
                row = (ns, name, v, labels(t, v), payload(ns, name, v))
                assert synced.upsert(*row) is True
                model[(ns, name)] = row
            else:
                row = (ns, name, v, labels(t, v), payload(ns, name, v))
                batch.append(("MODIFIED", *row))
                model[(ns, name)] = row
                if len(batch) == 7:
                    # A batched event may have been overtaken by a direct
                    # write of the same object meanwhile: the guard drops it
                    # (and the model already holds the newer write).
                    assert synced.apply(batch) <= 7
                    batch = []
        if batch:
            synced.apply(batch)

    def reader(t: int) -> None:
        rng = random.Random(100 + t)
        while not done.is_set() or reads[t] < 50:
            ns = rng.choice(NAMESPACES + [""])
            sel = rng.choice(selectors + [None])
            lst = synced.list(ns, sel)
            keys = [(o.namespace, o.name) for o in lst]
            assert keys == sorted(keys)
            for o in lst:
                check_object(o, sel, ns)
            got = synced.get(rng.choice(NAMESPACES), f"w{rng.randrange(writers)}-{rng.randint(0, 60)}")
            if got is not None:
                check_object(got, None, "")
            reads[t] += 1

    # The writers run to completion; one more thread then tells the readers
    # to stop (after at least 50 lists each).
    finished = threading.Barrier(writers + 1)

    def body(i: int) -> None:
        if i < writers:
            try:
                writer(i)
            finally:
                finished.wait()
        elif i == writers:
            finished.wait()
            done.set()
        else:
            reader(i - writers - 1)

    errors = run_threads(body, writers + 1 + readers)
    assert errors == [], errors
    assert min(reads) >= 50

    expected = {(r[0], r[1]): r for r in initial}
    for m in models:
        expected.update(m)
    # Deleted keys: a writer's model lacks them; the initial objects were
    # never touched by writers (their names differ), so the union is exact.
    assert rows(synced.list()) == [r for _, r in sorted(expected.items())]
    assert synced.stats().objects == len(expected)
    for sel in selectors:
        assert rows(synced.list("", sel)) == [r for _, r in sorted(expected.items()) if sel.matches(r[3])]


def test_one_list_read_by_many_threads(synced):
    synced.replace([("ns", f"o{i:04d}", i + 1, {"i": str(i)}, payload("ns", f"o{i:04d}", i + 1)) for i in range(2000)], 3000)
    lst = synced.list()

    def read(_: int) -> None:
        for _ in range(5):
            for o in lst:
                check_object(o, None, "ns")

    assert run_threads(read, 4) == []


def test_close_while_other_threads_are_in_flight():
    for _ in range(5):
        c = berth.Cache()
        c.replace([("ns", f"o{i}", i + 1, {"app": "x"}, b"p" * 100) for i in range(2000)], 3000)
        sel = berth.Selector("app=x")
        started = threading.Barrier(5)
        closed_seen = [0] * 4
        ok = [0] * 4

        def hammer(t: int) -> None:
            started.wait()
            v = itertools.count(10_000 * (t + 1))
            for _ in range(100_000):
                try:
                    if t % 2:
                        assert len(c.list("ns", sel)) >= 1
                    else:
                        c.upsert("ns", f"w{t}", next(v), {"app": "x"}, b"w")
                    ok[t] += 1
                except berth.ClosedError:
                    closed_seen[t] += 1
                    return
            raise AssertionError("close() never took effect")

        threads = [threading.Thread(target=hammer, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        started.wait()
        # Every thread has made calls (on a loaded machine 10 ms may not be
        # enough for that), then close() lands among calls in flight.
        deadline = time.monotonic() + 30
        while not all(ok) and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.005)
        c.close()
        for th in threads:
            th.join(timeout=60)
            assert not th.is_alive()
        assert closed_seen == [1, 1, 1, 1]
        assert all(n > 0 for n in ok)
        sel.close()


def test_selector_close_while_lists_use_it(synced):
    synced.replace([("ns", f"o{i}", i + 1, {"app": "x"}) for i in range(3000)], 4000)
    for _ in range(5):
        sel = berth.Selector("app in (x,y),!missing")
        started = threading.Barrier(4)
        outcome: list[str] = []

        def use(_: int) -> None:
            started.wait()
            for _ in range(100_000):
                try:
                    assert len(synced.list("ns", sel)) == 3000
                except berth.ClosedError:
                    outcome.append("closed")
                    return
            outcome.append("never closed")

        threads = [threading.Thread(target=use, args=(t,)) for t in range(3)]
        for th in threads:
            th.start()
        started.wait()
        time.sleep(0.01)
        sel.close()
        for th in threads:
            th.join(timeout=60)
            assert not th.is_alive()
        assert outcome == ["closed"] * 3
    assert len(synced.list("ns", "app=x")) == 3000  # the cache is unaffected


def test_list_releases_the_gil(synced):
    # A list of a big cache runs almost entirely inside Berth (and the check
    # of the returned buffer runs without the GIL too). If the GIL were held,
    # the main thread could not run a single bytecode meanwhile.
    synced.replace([("ns", f"o{i:06d}", i + 1, {"app": "x"}, b"p" * 100) for i in range(200_000)], 300_000)
    window: list[int] = []
    done = threading.Event()

    def worker() -> None:
        t0 = time.perf_counter_ns()
        lst = synced.list("", "app=x")
        window.extend((t0, time.perf_counter_ns()))
        assert len(lst) == 200_000
        done.set()

    stamps = []
    t = threading.Thread(target=worker)
    t.start()
    while not done.is_set():
        stamps.append(time.perf_counter_ns())
    t.join()
    t0, t1 = window
    assert t1 - t0 > 5_000_000, "the call was too quick to tell; grow the cache"
    points = [t0] + [s for s in stamps if t0 < s < t1] + [t1]
    longest_gap = max(b - a for a, b in zip(points, points[1:]))
    assert longest_gap < (t1 - t0) / 2, "the main thread stalled during the call: the GIL was held"


def _close_during_a_long_list(close_selector: bool) -> None:
    """A list of a big cache runs for tens of milliseconds inside Berth;
    close() of the cache (or of the selector the list uses) from the main
    thread meanwhile must return only after the list has, and the list must
    complete normally."""
    for _attempt in range(5):
        c = berth.Cache()
        c.replace([("ns", f"o{i:06d}", i + 1, {"app": "x"}, b"p" * 100) for i in range(200_000)], 300_000)
        sel = berth.Selector("app=x")
        result: dict[str, object] = {}
        started = threading.Event()

        def worker() -> None:
            started.set()
            try:
                lst = c.list("", sel)
                # Stamped before the list is dropped: freeing its buffer
                # releases the GIL, which lets close() finish first.
                result["returned_ns"] = time.perf_counter_ns()
                result["n"] = len(lst)
            except berth.ClosedError:
                result["n"] = "closed first"

        t = threading.Thread(target=worker)
        t.start()
        started.wait()
        time.sleep(0.005)  # let the worker enter Berth
        (sel if close_selector else c).close()
        closed_ns = time.perf_counter_ns()
        t.join(timeout=60)
        try:
            if result["n"] == "closed first":
                continue  # close() won the race before the call started; try again
            assert result["n"] == 200_000
            assert result["returned_ns"] <= closed_ns  # type: ignore[operator]
            with pytest.raises(berth.ClosedError):
                c.list("", sel)
            return
        finally:
            c.close()
            sel.close()
    pytest.fail("the worker's list never was in flight when close() ran")


def test_cache_close_waits_for_a_list_in_flight():
    _close_during_a_long_list(close_selector=False)


def test_selector_close_waits_for_a_list_in_flight():
    _close_during_a_long_list(close_selector=True)
