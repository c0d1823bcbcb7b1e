"""Cache.replace / Cache.apply as batches built in chunks (the GIL given up
between them), Cache._replace_stoppable, and Cache.replace_async."""

from __future__ import annotations

import asyncio
import struct
import threading

import pytest
from conftest import rows, run

import berth
from berth import _berth


def relist(n: int, rv0: int = 1, payload_len: int = 64) -> list[berth.Object]:
    return [
        berth.Object(
            f"ns-{i % 7}",
            f"o{i:06d}",
            rv0 + i,
            {"app": f"app-{i % 10}", "tier": f"t{i % 3}", "team": f"team-{i % 5}"},
            bytes([i % 251]) * payload_len,
        )
        for i in range(n)
    ]


def expected(objects: list[berth.Object]) -> list[tuple[str, str, int, dict[str, str], bytes]]:
    return sorted((o.namespace, o.name, o.resource_version, dict(o.labels), bytes(o.payload)) for o in objects)


# --------------------------------------------------------------------------
# Chunked building
# --------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 255, 256, 257, 1000, 5000])
def test_replace_across_chunk_boundaries_keeps_every_object(cache, n):
    objs = relist(n)
    cache.replace(objs, n + 1)
    assert rows(cache.list()) == expected(objs)
    assert len(cache) == n


def test_replace_of_mixed_item_kinds_across_chunks(cache):
    class Attrs:
        def __init__(self, i: int) -> None:
            self.namespace, self.name, self.resource_version = "a", f"x{i}", i + 1
            self.labels = {"k": str(i)}
            self.payload = bytearray(b"ba%d" % i)

    with berth.Cache() as src:
        src.replace([("v", f"v{i}", i + 1, {"from": "view"}, b"view%d" % i) for i in range(300)], 400)
        views = list(src.list())
    items: list[object] = []
    for i in range(600):
        items += [
            ("t", f"t{i}", i + 1, {"k": str(i)}, memoryview(b"mv%d" % i)),
            ["l", f"l{i}", i + 1, None, None],
            Attrs(i),
            views[i % 300],
        ]
    cache.replace(items, 10_000)
    got = {(o.namespace, o.name): (o.labels, bytes(o.payload)) for o in cache.list()}
    assert got[("t", "t599")] == ({"k": "599"}, b"mv599")
    assert got[("l", "l3")] == ({}, b"")
    assert got[("a", "x7")] == ({"k": "7"}, b"ba7")
    assert got[("v", "v299")] == ({"from": "view"}, b"view299")
    assert len(got) == 3 * 600 + 300


def test_apply_of_many_events_across_chunks(synced):
    events = [(berth.EventType.ADDED, "ns", f"e{i}", i + 2, {"i": str(i)}, b"p" * 100) for i in range(2000)]
    events += [("DELETED", "ns", f"e{i}", 10_000 + i) for i in range(0, 2000, 2)]
    assert synced.apply(events) == 3000
    assert [o.name for o in synced.list()] == sorted(f"e{i}" for i in range(1, 2000, 2))


def test_an_error_in_a_later_chunk_names_its_index_and_changes_nothing(synced):
    synced.upsert("ns", "keep", 2)
    before = rows(synced.list())
    objs: list[object] = list(relist(1000))
    objs[700] = ("ns", "", 3)
    with pytest.raises(berth.InvalidNameError, match=r"\b700\b"):
        synced.replace(objs, 5000)
    objs[700] = ("ns", "x", "3")
    with pytest.raises(TypeError, match=r"objects\[700\]\.resource_version"):
        synced.replace(objs, 5000)
    assert rows(synced.list()) == before


def test_object_list_bytes_is_the_finished_object_list():
    objs = relist(300)
    data = _berth._object_list_bytes(objs, 777)
    assert data[4:8] == b"BOBL"  # BERTH_FB_OBJECT_LIST_ID
    (root,) = struct.unpack_from("<I", data, 0)
    assert 8 <= root < len(data)
    # Every payload is in the bytes, copied once.
    assert all(data.count(bytes(o.payload)) >= 1 for o in objs[:251])
    assert len(data) > sum(len(o.payload) for o in objs)


# --------------------------------------------------------------------------
# Threads: the GIL is given up while building; other threads may change the
# objects meanwhile
# --------------------------------------------------------------------------


def test_building_a_list_gives_the_gil_to_other_threads():
    objs = relist(20_000, payload_len=1024)
    ran = 0
    stop = threading.Event()
    started = threading.Event()

    def count() -> None:
        nonlocal ran
        started.set()
        while not stop.is_set():
            ran += 1

    t = threading.Thread(target=count)
    t.start()
    started.wait()
    try:
        before = ran
        # Only building (no call into Berth, which releases the GIL anyway).
        _berth._object_list_bytes(objs, 1)
        during = ran - before
    finally:
        stop.set()
        t.join()
    assert during > 0


def test_replace_survives_a_list_and_labels_changed_by_another_thread(cache):
    n = 20_000
    shared_labels = [{"app": f"a{i}", "tier": "x"} for i in range(64)]
    payloads = [bytearray(b"q" * 256) for _ in range(64)]
    objs: list[object] = [("ns", f"o{i}", i + 1, shared_labels[i % 64], payloads[i % 64]) for i in range(n)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def mutate() -> None:
        i = 0
        try:
            while not stop.is_set():
                i += 1
                d = shared_labels[i % 64]
                d.clear()
                d[f"k{i % 5}"] = f"v{i}"
                d["app"] = "z" * (i % 40 + 1)
                objs.append(("ns", f"extra{i}", i + 1))
                if len(objs) > n:
                    objs.pop(i % n)
                try:
                    payloads[i % 64].extend(b"r")  # refused while exported
                except BufferError:
                    pass
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    t = threading.Thread(target=mutate)
    t.start()
    try:
        for rv in range(3):
            cache.replace(objs, 10**9 + rv)
            for o in cache.list():  # every object read back is well formed
                assert o.namespace == "ns" and o.name and o.resource_version > 0
                o.labels, bytes(o.payload)
    finally:
        stop.set()
        t.join()
    assert errors == []


def test_replace_stoppable_stops_at_a_chunk_boundary_and_changes_nothing(synced):
    synced.upsert("ns", "keep", 2)
    before = rows(synced.list())
    stop = threading.Event()
    read = 0

    def objects():
        nonlocal read
        for o in relist(5000):
            read += 1
            if read == 10:
                stop.set()
            yield o

    assert synced._replace_stoppable(objects(), 9999, stop) is False
    assert read < 600  # it stopped at the first chunk boundary after the set
    assert rows(synced.list()) == before
    assert synced._replace_stoppable(relist(10), 9999, threading.Event()) is True
    assert len(synced) == 10


def test_replace_stoppable_with_stop_already_set_reads_nothing(cache):
    stop = threading.Event()
    stop.set()

    def objects():
        raise AssertionError("read")
        yield  # pragma: no cover

    assert cache._replace_stoppable(objects(), 5, stop) is False
    with pytest.raises(berth.NotSyncedError):
        cache.list()


# --------------------------------------------------------------------------
# replace_async
# --------------------------------------------------------------------------


def test_replace_async_replaces_and_marks_the_cache_synced(cache):
    objs = relist(3000)
    assert run(cache.replace_async(objs, 5000)) is None
    assert rows(cache.list()) == expected(objs)
    assert cache.stats().synced


def test_replace_async_does_not_block_the_event_loop(cache):
    # The iterable (read in the worker thread) waits for the loop to run a
    # coroutine while the replace is in flight: a blocked loop would never
    # let it go on.
    loop_ran = threading.Event()

    async def main() -> None:
        def objects():
            yield from relist(50)
            assert loop_ran.wait(30), "the loop did not run during replace_async"
            yield from relist(100)[50:]

        task = asyncio.create_task(cache.replace_async(objects(), 5000))
        await asyncio.sleep(0)
        loop_ran.set()
        await task

    run(main())
    assert len(cache) == 100


def test_replace_async_raises_as_replace_and_changes_nothing(synced):
    synced.upsert("ns", "keep", 2)
    before = rows(synced.list())
    with pytest.raises(berth.InvalidNameError, match=r"\b3\b"):
        run(synced.replace_async([("ns", "a", 3)] * 3 + [("ns", "", 3)], 10))
    assert rows(synced.list()) == before


def test_replace_async_cancelled_while_reading_stops_and_leaves_the_cache_unchanged(synced):
    synced.upsert("ns", "keep", 2)
    before = rows(synced.list())
    go = threading.Event()
    read = 0

    async def main() -> None:
        loop = asyncio.get_running_loop()
        reading = asyncio.Event()

        def objects():
            nonlocal read
            for i, o in enumerate(relist(5000)):
                if i == 10:
                    loop.call_soon_threadsafe(reading.set)
                    assert go.wait(30)
                read += 1
                yield o

        task = asyncio.create_task(synced.replace_async(objects(), 9999))
        await reading.wait()
        task.cancel()
        for _ in range(3):
            await asyncio.sleep(0)  # the task handles its cancellation (sets stop) first
        go.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The worker had returned before the task saw CancelledError: it
        # stopped at the first chunk boundary after the stop.
        assert 10 < read < 5000

    run(main())
    assert rows(synced.list()) == before


def test_replace_async_cancelled_repeatedly_still_waits_for_the_worker(cache):
    go = threading.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        reading = asyncio.Event()

        def objects():
            yield ("ns", "a", 1)
            loop.call_soon_threadsafe(reading.set)
            assert go.wait(30)

        task = asyncio.create_task(cache.replace_async(objects(), 5))
        await reading.wait()
        for _ in range(5):
            task.cancel()
            await asyncio.sleep(0)
        assert not task.done()  # still waiting for the worker
        go.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    # The stop was set before the last item was read: the build stopped
    # there, and Berth never got the list.
    assert len(cache) == 0
    with pytest.raises(berth.NotSyncedError):
        cache.list()
