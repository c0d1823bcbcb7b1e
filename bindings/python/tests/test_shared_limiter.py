"""berth.SharedLimiter: one capacity across handles and processes, reclaiming
the permits of dead processes, refusing foreign regions, blocking and asyncio
waits, cancellation, close(), fork."""

from __future__ import annotations

import asyncio
import builtins
import gc
import itertools
import multiprocessing
import os
import pathlib
import random
import select
import signal
import sys
import threading
import time
import weakref
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from conftest import async_wait_until, run, run_threads, start_thread, wait_until

import berth
from berth import _limit

SHM = pathlib.Path("/dev/shm")
_seq = itertools.count()


def unique_name(tag: str = "t") -> str:
    """A name no other test (or concurrent test run) uses."""
    return f"pytest-{os.getpid()}-{tag}-{next(_seq)}"


def unlink_quietly(name: str) -> None:
    try:
        berth.SharedLimiter.unlink(name)
    except berth.NotFoundError:
        pass


@pytest.fixture
def name() -> Iterator[str]:
    n = unique_name()
    try:
        yield n
    finally:
        unlink_quietly(n)


@pytest.fixture
def limiter(name: str) -> Iterator[berth.SharedLimiter]:
    lim = berth.SharedLimiter(name, 3)
    try:
        yield lim
    finally:
        lim.close()


@pytest.fixture
def other(limiter: berth.SharedLimiter) -> Iterator[berth.SharedLimiter]:
    """A second handle of this process on the same limiter."""
    lim = berth.SharedLimiter(limiter.name)
    try:
        yield lim
    finally:
        lim.close()


# --------------------------------------------------------------------------
# Opening, names, unlink
# --------------------------------------------------------------------------


def test_create_then_open_sees_the_same_limiter(name):
    with pytest.raises(berth.NotFoundError) as info:
        berth.SharedLimiter(name)  # capacity None: open only
    assert info.value.status == berth.Status.ERR_NOT_FOUND
    assert name in info.value.message
    assert not (SHM / f"berth.{name}").exists()

    a = berth.SharedLimiter(name, 4)
    assert (SHM / f"berth.{name}").is_file()
    b = berth.SharedLimiter(name)
    try:
        assert a.name == b.name == name
        assert b.capacity == 4
        s = b.stats()
        assert isinstance(s, berth.SharedLimiterStats)
        assert s == berth.SharedLimiterStats(4, 0, 0, 0, 0, 0, 0, 0)
        assert repr(a) == f"<berth.SharedLimiter {name!r} capacity=4 in_use=0 waiting=0>"
    finally:
        a.close()
        b.close()
    assert repr(a) == f"<berth.SharedLimiter {name!r} closed>"


def test_an_existing_limiter_keeps_its_capacity(limiter):
    again = berth.SharedLimiter(limiter.name, 100)
    try:
        assert again.capacity == 3
        again.capacity = 5  # the way to change it
        assert limiter.capacity == 5
    finally:
        again.close()


@pytest.mark.parametrize("bad", ["", "a/b", "x y", "é", "x" * 201, "..\x00"], ids=repr)
def test_bad_names_are_invalid_names(bad):
    with pytest.raises(berth.InvalidNameError):
        berth.SharedLimiter(bad, 1)
    with pytest.raises(berth.InvalidNameError):
        berth.SharedLimiter.unlink(bad)


def test_a_name_of_200_bytes_is_fine():
    n = f"pytest-{os.getpid()}-"
    n += "x" * (200 - len(n))
    lim = berth.SharedLimiter(n, 1)
    try:
        assert lim.try_acquire()
        lim.release()
    finally:
        lim.close()
        berth.SharedLimiter.unlink(n)


def test_name_must_be_a_str_and_lone_surrogates_are_invalid_names():
    with pytest.raises(TypeError, match="name"):
        berth.SharedLimiter(b"abc", 1)  # type: ignore[arg-type]
    with pytest.raises(berth.InvalidNameError, match="UTF-8"):
        berth.SharedLimiter("a\udc80b", 1)


@pytest.mark.parametrize("capacity", [0, -1, 2**63])
def test_bad_capacity_is_an_invalid_argument(name, capacity):
    with pytest.raises(berth.InvalidArgumentError):
        berth.SharedLimiter(name, capacity)
    assert not (SHM / f"berth.{name}").exists()


@pytest.mark.parametrize("capacity", [2.0, True, "2"], ids=repr)
def test_capacity_must_be_an_int_or_none(name, capacity):
    with pytest.raises(TypeError, match="capacity"):
        berth.SharedLimiter(name, capacity)  # type: ignore[arg-type]


def test_unlink_removes_the_name_but_open_handles_keep_working(limiter, name):
    assert limiter.try_acquire(2)
    berth.SharedLimiter.unlink(name)
    assert not (SHM / f"berth.{name}").exists()
    with pytest.raises(berth.NotFoundError):
        berth.SharedLimiter(name)
    with pytest.raises(berth.NotFoundError):
        berth.SharedLimiter.unlink(name)
    # The old region lives on for its handles; a new one is independent.
    fresh = berth.SharedLimiter(name, 10)
    try:
        assert fresh.stats().in_use == 0
        assert limiter.stats().in_use == 2
        limiter.release(2)
    finally:
        fresh.close()


# --------------------------------------------------------------------------
# A region that is not ours
# --------------------------------------------------------------------------


def region_size() -> int:
    n = unique_name("size")
    lim = berth.SharedLimiter(n, 1)
    try:
        return (SHM / f"berth.{n}").stat().st_size
    finally:
        lim.close()
        berth.SharedLimiter.unlink(n)


@pytest.mark.parametrize("size_delta", [0, -8, 4096], ids=["right size", "short", "long"])
def test_a_foreign_region_is_refused_and_left_untouched(name, size_delta):
    path = SHM / f"berth.{name}"
    junk = random.Random(7).randbytes(region_size() + size_delta)
    path.write_bytes(junk)
    for capacity in (None, 5):
        with pytest.raises(berth.BadRegionError) as info:
            berth.SharedLimiter(name, capacity)
        err = info.value
        assert isinstance(err, berth.Error)
        assert (err.status, err.status_name) == (11, "BERTH_ERR_BAD_REGION")
        assert err.status == berth.Status.ERR_BAD_REGION
        assert f"berth.{name}" in err.message
    assert path.read_bytes() == junk
    # unlink() removes any region under the name: the way out, on purpose.
    berth.SharedLimiter.unlink(name)
    assert not path.exists()


def test_a_region_of_another_layout_version_is_refused(limiter, name):
    # The right size and magic but a layout version Berth does not know.
    path = SHM / f"berth.{name}"
    raw = bytearray(path.read_bytes())
    raw[8:12] = (999).to_bytes(4, "little")  # after the 8-byte magic
    unlink_quietly(name)
    path.write_bytes(bytes(raw))
    with pytest.raises(berth.BadRegionError):
        berth.SharedLimiter(name)


# --------------------------------------------------------------------------
# One capacity for every handle of the process
# --------------------------------------------------------------------------


def test_two_handles_in_one_process_share_one_capacity(limiter, other):
    assert limiter.try_acquire(2)
    assert other.stats().in_use == 2
    assert other.try_acquire(1)
    assert not other.try_acquire(1)
    assert not limiter.try_acquire(1)
    s = limiter.stats()
    assert (s.capacity, s.in_use, s.holders, s.granted, s.rejected) == (3, 3, 1, 2, 2)
    # Permits belong to the process: any of its handles releases them.
    other.release(3)
    assert limiter.stats().in_use == 0
    other.capacity = 7
    assert limiter.capacity == 7


def test_try_acquire_reason_says_why(limiter, other):
    assert limiter.try_acquire_reason(2) is berth.Refusal.GRANTED
    assert limiter.try_acquire_reason(2) is berth.Refusal.AT_CAPACITY
    t, errors = start_thread(lambda: other.acquire_blocking(3, timeout=30))
    wait_until(lambda: limiter.stats().waiting == 1)
    assert limiter.try_acquire_reason(1) is berth.Refusal.WAITERS_QUEUED  # FIFO
    assert limiter.stats().in_use == 2
    limiter.release(2)
    t.join(10)
    assert not errors and limiter.stats().in_use == 3


def test_release_more_than_the_process_holds_changes_nothing(limiter):
    assert limiter.try_acquire(2)
    with pytest.raises(berth.InvalidArgumentError, match="holds 2"):
        limiter.release(3)
    assert limiter.stats().in_use == 2
    limiter.release(2)
    with pytest.raises(berth.InvalidArgumentError):
        limiter.release()


@pytest.mark.parametrize("n", [0, -1, 4])
def test_n_out_of_range_is_an_invalid_argument(limiter, n):
    calls = [
        limiter.try_acquire,
        limiter.try_acquire_reason,
        lambda n: limiter.acquire_blocking(n, timeout=1),
        lambda n: limiter.acquire_blocking(n, timeout=0),
        lambda n: limiter.hold(n, timeout=1).__enter__(),
    ]
    if n < 1:
        calls.append(limiter.release)
    for call in calls:
        with pytest.raises(berth.InvalidArgumentError):
            call(n)

    async def main() -> None:
        async with limiter.acquire(n):
            pass

    with pytest.raises(berth.InvalidArgumentError):
        run(main())
    s = limiter.stats()
    assert (s.in_use, s.waiting) == (0, 0)


@pytest.mark.parametrize("bad", [1.0, True, "1", None], ids=repr)
def test_n_must_be_an_int(limiter, bad):
    for call in (limiter.try_acquire, limiter.release, limiter.acquire_blocking):
        with pytest.raises(TypeError, match="n"):
            call(bad)


def test_lowering_the_capacity_never_revokes_held_permits(limiter, other):
    limiter.capacity = 10
    assert limiter.try_acquire(8)
    other.set_capacity(5)
    s = limiter.stats()
    assert (s.capacity, s.in_use) == (5, 8)
    assert limiter.try_acquire_reason(1) is berth.Refusal.AT_CAPACITY
    limiter.release(4)
    assert limiter.try_acquire(1)
    assert not limiter.try_acquire(1)
    limiter.release(5)


# --------------------------------------------------------------------------
# Blocking waits (threads)
# --------------------------------------------------------------------------


def test_acquire_blocking_times_out_holding_nothing(limiter):
    assert limiter.try_acquire(3)
    t0 = time.monotonic()
    with pytest.raises(berth.TimeoutError) as info:
        limiter.acquire_blocking(1, timeout=0.05)
    assert 0.045 <= time.monotonic() - t0 < 5
    assert isinstance(info.value, builtins.TimeoutError)
    assert info.value.status_name == "BERTH_ERR_TIMEOUT"
    # The handle's thread leaves the region's queue shortly after the cancel.
    wait_until(lambda: limiter.stats().waiting == 0)
    assert limiter.stats().in_use == 3
    limiter.release(3)
    # The cancelled wait is gone for good: nothing granted to it later.
    time.sleep(0.02)
    s = limiter.stats()
    assert (s.in_use, s.waiting) == (0, 0)


def test_acquire_blocking_with_timeout_zero_only_takes_free_permits(limiter):
    limiter.acquire_blocking(3, timeout=0)
    with pytest.raises(berth.TimeoutError):
        limiter.acquire_blocking(1, timeout=0)
    s = limiter.stats()
    assert (s.in_use, s.waiting, s.timed_out) == (3, 0, 1)


@pytest.mark.parametrize("timeout", [-1, -0.5, float("nan")], ids=repr)
def test_negative_timeout_is_an_invalid_argument(limiter, timeout):
    with pytest.raises(berth.InvalidArgumentError, match="timeout"):
        limiter.acquire_blocking(1, timeout=timeout)


def test_acquire_blocking_is_granted_by_a_release_through_another_handle(limiter, other):
    assert other.try_acquire(3)
    got = threading.Event()

    def waiter() -> None:
        limiter.acquire_blocking(2)
        got.set()

    t, errors = start_thread(waiter)
    wait_until(lambda: limiter.stats().waiting == 1)
    other.release(1)  # 2 + 2 > 3
    time.sleep(0.03)
    assert not got.is_set()
    other.release(1)
    assert got.wait(10)
    t.join(10)
    assert not errors
    assert limiter.stats().in_use == 3


def test_hold_holds_for_the_block_and_releases_on_error(limiter):
    with limiter.hold(2):
        assert limiter.stats().in_use == 2
    assert limiter.stats().in_use == 0
    with pytest.raises(KeyError):
        with limiter.hold(3, timeout=1):
            raise KeyError("x")
    assert limiter.stats().in_use == 0
    assert repr(limiter.hold(2)).startswith("<berth.SharedLimiter.hold n=2 of <berth.SharedLimiter")


def test_hold_timeout_raises_and_holds_nothing(limiter):
    assert limiter.try_acquire(2)
    entered = False
    with pytest.raises(berth.TimeoutError):
        with limiter.hold(2, timeout=0.02):
            entered = True
    assert not entered
    assert limiter.stats().in_use == 2


def test_there_is_no_synchronous_with_on_the_limiter_itself(limiter):
    with pytest.raises((TypeError, AttributeError)):
        with limiter:  # type: ignore[attr-defined]
            pass


def test_blocking_waits_refuse_to_run_on_an_event_loop_thread(limiter):
    async def main() -> None:
        with pytest.raises(RuntimeError, match="event loop"):
            limiter.acquire_blocking(1)
        with pytest.raises(RuntimeError, match="event loop"):
            with limiter.hold(1, timeout=5):
                pass
        limiter.acquire_blocking(1, timeout=0)  # cannot block: allowed
        limiter.release(1)

    run(main())
    assert limiter.stats().in_use == 0


def test_a_signal_interrupts_a_blocking_wait_holding_nothing(limiter):
    assert threading.current_thread() is threading.main_thread()
    assert limiter.try_acquire(3)
    timer = threading.Timer(0.1, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            limiter.acquire_blocking(1, timeout=20)
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 10
    wait_until(lambda: limiter.stats().waiting == 0)
    limiter.release(3)
    time.sleep(0.02)
    s = limiter.stats()
    assert (s.in_use, s.waiting) == (0, 0)


def test_a_signal_whose_handler_returns_does_not_end_the_wait(limiter):
    seen = []
    old = signal.signal(signal.SIGUSR1, lambda *_: seen.append(1))
    try:
        assert limiter.try_acquire(3)
        threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGUSR1)).start()
        threading.Timer(0.15, lambda: limiter.release(1)).start()
        limiter.acquire_blocking(1, timeout=20)
        assert seen == [1]
        assert limiter.stats().in_use == 3
        limiter.release(3)
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_threads_never_exceed_the_capacity_and_leave_nothing_held(name):
    lim = berth.SharedLimiter(name, 4)
    handles = [lim, berth.SharedLimiter(name)]
    lock = threading.Lock()
    held = [0, 0]

    def worker(i: int) -> None:
        rng = random.Random(i)
        h = handles[i % 2]
        for _ in range(150):
            n = rng.choice([1, 1, 2, 4])
            with h.hold(n, timeout=30):
                with lock:
                    held[0] += n
                    held[1] = max(held[1], held[0])
                    assert held[0] <= 4
                with lock:
                    held[0] -= n

    assert run_threads(worker, 6) == []
    s = lim.stats()
    assert (s.in_use, s.waiting, s.granted) == (0, 0, 6 * 150)
    assert held[1] == 4
    for h in handles:
        h.close()


# --------------------------------------------------------------------------
# asyncio
# --------------------------------------------------------------------------


def test_async_acquire_granted_at_once_does_not_yield(limiter):
    async def main() -> None:
        ran = False

        async def other_task() -> None:
            nonlocal ran
            ran = True

        task = asyncio.create_task(other_task())
        async with limiter.acquire(2):
            assert limiter.stats().in_use == 2
            assert not ran
        async with limiter:
            assert limiter.stats().in_use == 1
            assert not ran
        assert limiter.stats().in_use == 0
        await task

    run(main())
    assert repr(limiter.acquire(2)).startswith("<berth.SharedLimiter.acquire n=2 of")


def test_async_acquire_releases_when_the_block_raises(limiter):
    async def main() -> None:
        with pytest.raises(KeyError):
            async with limiter.acquire(3):
                raise KeyError("x")
        assert limiter.stats().in_use == 0

    run(main())


def test_async_waiters_respect_the_capacity_and_all_finish(name):
    lim = berth.SharedLimiter(name, 4)

    async def main() -> int:
        held = peak = done = 0

        async def task(i: int) -> None:
            nonlocal held, peak, done
            n = 1 + i % 3
            async with lim.acquire(n):
                held += n
                peak = max(peak, held)
                assert held <= 4
                for _ in range(i % 3):
                    await asyncio.sleep(0)
                held -= n
            done += 1

        await asyncio.gather(*(task(i) for i in range(1000)))
        assert peak == 4
        return done

    assert run(main()) == 1000
    s = lim.stats()
    assert (s.in_use, s.waiting, s.granted) == (0, 0, 1000)
    lim.close()


def test_async_waiters_are_served_first_come_first_served(limiter):
    limiter.capacity = 10

    async def main() -> list[str]:
        order: list[str] = []
        assert limiter.try_acquire(9)

        async def task(tag: str, n: int) -> None:
            async with limiter.acquire(n):
                order.append(tag)
                await asyncio.sleep(0.001)

        tasks = [asyncio.create_task(task("big", 10))]
        await async_wait_until(lambda: limiter.stats().waiting == 1)
        for i in range(5):
            tasks.append(asyncio.create_task(task(f"small{i}", 1)))
            await asyncio.sleep(0)
        assert limiter.try_acquire_reason(1) is berth.Refusal.WAITERS_QUEUED
        await asyncio.sleep(0.02)
        assert order == []
        limiter.release(9)
        await asyncio.gather(*tasks)
        return order

    assert run(main()) == ["big", "small0", "small1", "small2", "small3", "small4"]
    assert limiter.stats().in_use == 0


def test_async_wait_never_blocks_the_event_loop(limiter, other):
    assert other.try_acquire(3)

    async def main() -> tuple[int, float, int]:
        ticks = 0
        longest_gap = 0.0
        stop = False

        async def heartbeat() -> None:
            nonlocal ticks, longest_gap
            last = time.monotonic()
            while not stop:
                await asyncio.sleep(0.001)
                now = time.monotonic()
                longest_gap = max(longest_gap, now - last)
                last = now
                ticks += 1

        done = 0

        async def waiter() -> None:
            nonlocal done
            async with limiter:
                done += 1

        hb = asyncio.create_task(heartbeat())
        waiters = [asyncio.create_task(waiter()) for _ in range(50)]
        await async_wait_until(lambda: limiter.stats().waiting == 1)
        ticks_before = ticks
        threading.Timer(0.3, lambda: other.release(3)).start()
        await asyncio.gather(*waiters)
        stop = True
        await hb
        return ticks - ticks_before, longest_gap, done

    ticks, gap, done = run(main())
    assert done == 50
    assert ticks >= 30, ticks
    assert gap < 0.25, gap
    s = limiter.stats()
    assert (s.in_use, s.waiting) == (0, 0)


def test_cancelling_a_waiting_task_leaves_the_queue(limiter):
    async def main() -> None:
        assert limiter.try_acquire(3)

        async def waiter() -> None:
            async with limiter.acquire(2):
                raise AssertionError("entered")

        task = asyncio.create_task(waiter())
        await async_wait_until(lambda: limiter.stats().waiting == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await async_wait_until(lambda: limiter.stats().waiting == 0)
        limiter.release(3)
        await asyncio.sleep(0.02)  # nothing is granted to the cancelled wait
        s = limiter.stats()
        assert (s.in_use, s.waiting) == (0, 0)
        assert limiter._waits == {}

    run(main())


def test_cancel_racing_the_grant_gives_the_permits_back(limiter, other):
    async def main() -> None:
        assert other.try_acquire(3)

        async def waiter() -> None:
            async with limiter.acquire(3):
                raise AssertionError("a cancelled task entered the block")

        task = asyncio.create_task(waiter())
        await async_wait_until(lambda: limiter.stats().waiting == 1)
        other.release(3)  # the handle's thread is granted and posts the token
        # Not yielding to the loop: the grant waits unclaimed.
        wait_until(lambda: (lambda s: (s.in_use, s.waiting) == (3, 0))(limiter.stats()))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert limiter.stats().in_use == 0
        await asyncio.sleep(0.01)  # the stale token arrives and is dropped
        assert _limit._waiters(asyncio.get_running_loop()).futures == {}
        async with limiter.acquire(3):
            pass

    run(main())
    assert limiter.stats().in_use == 0


def test_thousands_of_random_cancellations_leak_nothing(name):
    lim = berth.SharedLimiter(name, 5)
    rng = random.Random(20240607)

    async def main() -> dict[str, int]:
        held = 0
        outcomes = {"done": 0, "cancelled": 0, "timeout": 0}

        async def body(n: int, sleeps: int) -> None:
            nonlocal held
            async with lim.acquire(n):
                held += n
                assert held <= 5, held
                try:
                    for _ in range(sleeps):
                        await asyncio.sleep(0)
                finally:
                    held -= n

        async def with_timeout(n: int, sleeps: int, timeout: float) -> None:
            async with asyncio.timeout(timeout):
                await body(n, sleeps)

        async def with_wait_for(n: int, sleeps: int, timeout: float) -> None:
            await asyncio.wait_for(body(n, sleeps), timeout)

        tasks: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()
        for i in range(3000):
            n = rng.choice([1, 1, 1, 2, 3, 5])
            sleeps = rng.randint(0, 3)
            kind = rng.random()
            if kind < 0.3:
                coro: Coroutine[Any, Any, None] = with_wait_for(n, sleeps, rng.choice([0, 1e-5, 1e-4, 1e-3]))
            elif kind < 0.45:
                coro = with_timeout(n, sleeps, rng.choice([0, 1e-5, 1e-3]))
            else:
                coro = body(n, sleeps)
            task = loop.create_task(coro)
            tasks.append(task)
            r = rng.random()
            if r < 0.15:
                task.cancel()
            elif r < 0.35:
                loop.call_soon(task.cancel)
            elif r < 0.5:
                loop.call_later(rng.random() * 2e-3, task.cancel)
            if i % 50 == 0:
                await asyncio.sleep(0)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            if r is None:
                outcomes["done"] += 1
            elif isinstance(r, asyncio.CancelledError):
                outcomes["cancelled"] += 1
            elif isinstance(r, builtins.TimeoutError):
                outcomes["timeout"] += 1
            else:
                raise AssertionError(f"leaked exception: {r!r}") from r
        assert held == 0
        await asyncio.sleep(0.02)  # stale tokens of cancelled grants arrive
        assert _limit._waiters(loop).futures == {}
        assert lim._waits == {}
        return outcomes

    outcomes = run(main())
    assert sum(outcomes.values()) == 3000
    assert all(v > 100 for v in outcomes.values()), outcomes
    wait_until(lambda: lim.stats().waiting == 0)
    s = lim.stats()
    assert (s.in_use, s.waiting, s.holders) == (0, 0, 0), s
    lim.close()


def test_one_limiter_for_event_loops_in_several_threads(name):
    lim = berth.SharedLimiter(name, 3)

    def worker(i: int) -> None:
        h = lim if i % 2 else berth.SharedLimiter(name)  # shared and own handles

        async def task(j: int) -> None:
            async with h.acquire(1 + j % 2):
                assert lim.stats().in_use <= 3
                await asyncio.sleep(0)

        async def main() -> None:
            await asyncio.gather(*(task(j) for j in range(200)))

        run(main())
        if h is not lim:
            h.close()

    assert run_threads(worker, 4) == []
    s = lim.stats()
    assert (s.in_use, s.waiting, s.granted) == (0, 0, 800)
    lim.close()


# --------------------------------------------------------------------------
# close()
# --------------------------------------------------------------------------

CALLS = {
    "try_acquire": lambda lim: lim.try_acquire(1),
    "try_acquire_reason": lambda lim: lim.try_acquire_reason(1),
    "acquire_blocking": lambda lim: lim.acquire_blocking(1, timeout=1),
    "acquire_blocking(timeout=0)": lambda lim: lim.acquire_blocking(1, timeout=0),
    "release": lambda lim: lim.release(1),
    "set_capacity": lambda lim: lim.set_capacity(5),
    "stats": lambda lim: lim.stats(),
    "capacity": lambda lim: lim.capacity,
    "capacity=": lambda lim: setattr(lim, "capacity", 4),
    "hold": lambda lim: lim.hold(1).__enter__(),
    "async acquire": lambda lim: run(lim.acquire(1).__aenter__()),
    "async with": lambda lim: run(lim.__aenter__()),
}


@pytest.mark.parametrize("call", CALLS)
def test_every_method_of_a_closed_limiter_raises_closed_error(name, call):
    lim = berth.SharedLimiter(name, 2)
    lim.close()
    assert lim.closed
    with pytest.raises(berth.ClosedError):
        CALLS[call](lim)
    assert lim.name == name  # still says what it was


def test_close_is_idempotent_and_leaves_other_handles_alone(limiter, other):
    assert other.try_acquire(1)
    limiter.close()
    limiter.close()
    assert other.stats().in_use == 1
    other.release(1)


def test_close_gives_back_the_permits_of_open_blocks_only(limiter, other):
    assert limiter.try_acquire(1)  # the caller's: stays held
    with limiter.hold(1):
        assert other.stats().in_use == 2
        limiter.close()
        assert other.stats().in_use == 1
    # Leaving the block after close() is a no-op.
    assert other.stats().in_use == 1
    other.release(1)  # the process's permit, through its other handle
    assert other.stats().in_use == 0


def test_close_gives_back_the_permits_of_open_async_blocks(name):
    lim = berth.SharedLimiter(name, 4)
    watcher = berth.SharedLimiter(name)

    async def main() -> None:
        async with lim.acquire(3):
            lim.close()
            assert watcher.stats().in_use == 0
        with pytest.raises(berth.ClosedError):
            lim.release(1)

    run(main())
    assert watcher.stats().in_use == 0
    watcher.close()


def test_a_block_whose_permits_were_released_by_hand_is_not_given_back_twice(limiter, other):
    with pytest.raises(berth.InvalidArgumentError):
        with limiter.hold(2):
            limiter.release(2)  # misuse: the block's exit then has nothing to release
    assert other.try_acquire(1)
    limiter.close()  # must not release the process's other permit
    assert other.stats().in_use == 1
    other.release(1)


def test_close_racing_grants_and_claims_leaks_nothing(name):
    """close() in one thread while another thread's loop claims grants: every
    permit ends up released, whichever side wins each race (a grant or a
    claim in flight when close() starts gives its permits back)."""
    watcher = berth.SharedLimiter(name, 2)
    rng = random.Random(5)
    outcomes = {"entered": 0, "closed": 0}
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # hand the GIL over often: more interleavings
    try:
        for _ in range(300):
            lim = berth.SharedLimiter(name)
            assert watcher.try_acquire(2)
            started = threading.Event()

            async def main() -> None:
                async def one() -> None:
                    try:
                        async with lim.acquire(1):
                            outcomes["entered"] += 1
                            await asyncio.sleep(0)
                    except berth.ClosedError:
                        outcomes["closed"] += 1

                tasks = [asyncio.create_task(one()) for _ in range(3)]
                await async_wait_until(lambda: len(lim._waits) == 3)
                started.set()
                await asyncio.gather(*tasks)

            t, errors = start_thread(lambda: run(main(), timeout=20))
            assert started.wait(10)
            watcher.release(2)  # grants race the close below
            spin_until = time.perf_counter() + rng.random() * 5e-4
            while time.perf_counter() < spin_until:
                pass
            lim.close()
            t.join(20)
            assert not t.is_alive() and not errors, errors
            wait_until(lambda: watcher.stats().waiting == 0)
            s = watcher.stats()
            assert (s.in_use, s.holders) == (0, 0), (s, outcomes)
    finally:
        sys.setswitchinterval(old_interval)
    assert outcomes["closed"] > 0 and outcomes["entered"] > 0, outcomes
    watcher.close()


def test_close_wakes_a_blocked_thread_with_closed_error(limiter, other):
    assert other.try_acquire(3)
    t, errors = start_thread(lambda: limiter.acquire_blocking(1))
    wait_until(lambda: other.stats().waiting == 1)
    closer = threading.Thread(target=limiter.close, daemon=True)
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), "close() hangs on the blocked thread"
    t.join(10)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], berth.ClosedError), errors
    wait_until(lambda: other.stats().waiting == 0)
    other.release(3)
    time.sleep(0.02)
    s = other.stats()
    assert (s.in_use, s.waiting) == (0, 0)


def test_close_wakes_async_waiters_with_closed_error(limiter, other):
    assert other.try_acquire(3)

    async def main() -> list[BaseException | None]:
        async def waiter() -> None:
            async with limiter:
                raise AssertionError("entered a closed limiter")

        tasks = [asyncio.create_task(waiter()) for _ in range(20)]
        await async_wait_until(lambda: len(limiter._waits) == 20)
        limiter.close()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = run(main(), timeout=10)
    assert all(isinstance(r, berth.ClosedError) for r in results), results
    wait_until(lambda: other.stats().waiting == 0)
    other.release(3)
    time.sleep(0.02)
    s = other.stats()
    assert (s.in_use, s.waiting) == (0, 0)


def test_close_from_another_thread_wakes_async_waiters(limiter, other):
    assert other.try_acquire(3)

    async def main() -> list[BaseException | None]:
        async def waiter() -> None:
            async with limiter.acquire(2):
                raise AssertionError("entered a closed limiter")

        tasks = [asyncio.create_task(waiter()) for _ in range(5)]
        await async_wait_until(lambda: len(limiter._waits) == 5)
        threading.Thread(target=limiter.close).start()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = run(main(), timeout=10)
    assert all(isinstance(r, berth.ClosedError) for r in results), results
    other.release(3)


def test_a_dropped_limiter_is_freed(name):
    keep = berth.SharedLimiter(name, 2)
    lim = berth.SharedLimiter(name)
    lim.try_acquire(1)
    ref = weakref.ref(lim)
    del lim
    gc.collect()
    assert ref() is None
    # Its permit belongs to the process, not the handle: another handle of
    # the process still counts it...
    assert keep.stats().in_use == 1
    keep.release(1)
    # ...and the process's last handle gives back what it still holds.
    keep.try_acquire(2)
    keep.close()
    again = berth.SharedLimiter(name)
    assert again.stats().in_use == 0
    again.close()


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------


def in_child(fn, timeout: float = 30) -> tuple[int, str]:
    """Runs fn() in a forked child; returns (exit status, what it wrote).
    A child that hangs is killed and fails the test."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        code = 0
        try:
            out = str(fn())
        except BaseException as exc:  # noqa: BLE001
            out, code = f"{type(exc).__name__}: {exc}", 1
        os.write(w, out.encode())
        os._exit(code)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError(f"the child hung; it wrote {b''.join(chunks)!r}")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode()


def test_a_handle_opened_before_a_fork_works_in_the_child_as_a_new_process(limiter):
    # Start the parent's thread for this handle and leave the parent holding
    # a block: the child needs neither, and inherits neither.
    async def queue_once() -> None:
        assert limiter.try_acquire(3)
        task = asyncio.create_task(limiter.acquire(1).__aenter__())
        await async_wait_until(lambda: limiter.stats().waiting == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        limiter.release(3)

    run(queue_once())
    block = limiter.hold(1)
    block.__enter__()

    def child() -> str:
        out = []
        with pytest.raises(berth.InvalidArgumentError):
            limiter.release(1)  # the parent's permit is not the child's
        assert limiter.try_acquire(1)  # the child's own
        out.append(limiter.stats().holders)
        limiter.acquire_blocking(1, timeout=5)  # waits work: the child's own thread
        limiter.release(2)
        with limiter.hold(1, timeout=5):
            out.append(limiter.stats().in_use)

        async def main() -> int:
            async with limiter.acquire(1):
                return limiter.stats().in_use

        out.append(asyncio.run(main()))
        t0 = time.monotonic()
        limiter.close()  # the child's handle: frees what the child made
        out.append(time.monotonic() - t0 < 1)
        return repr(out)

    code, out = in_child(child)
    assert (code, out) == (0, "[2, 2, 2, True]")
    assert not limiter.closed
    block.__exit__(None, None, None)
    s = limiter.stats()
    assert (s.in_use, s.waiting, s.reclaimed) == (0, 0, 0)


def test_permits_of_a_child_that_exits_without_releasing_are_reclaimed(limiter):
    def child() -> str:
        own = berth.SharedLimiter(limiter.name)
        assert own.try_acquire(2)
        return "ok"  # exits holding 2

    assert in_child(child) == (0, "ok")
    s = limiter.stats()  # reclaims
    assert (s.in_use, s.holders, s.reclaimed) == (0, 0, 2)


# multiprocessing ('spawn': every worker opens its own handle, as it must).


def _mp_worker(name: str, idx: int, held, lock, peak, stop, iterations) -> None:
    lim = berth.SharedLimiter(name)
    rng = random.Random(idx)
    while not stop.is_set():
        n = rng.choice([1, 1, 2])
        with lim.hold(n, timeout=30):
            with lock:
                held[idx] += n
                peak.value = max(peak.value, sum(held))
            time.sleep(0.002)
            with lock:
                held[idx] -= n
        iterations[idx] += 1
    lim.close()


def _mp_victim(name: str, idx: int, held, lock, holding) -> None:
    lim = berth.SharedLimiter(name)

    async def main() -> None:
        async with lim.acquire(2):
            with lock:
                held[idx] += 2
            holding.set()
            await asyncio.sleep(600)  # killed here

    asyncio.run(main())


def _mp_async_worker(name: str, idx: int, held, lock, peak, stop, iterations) -> None:
    lim = berth.SharedLimiter(name)
    rng = random.Random(idx)

    async def task() -> None:
        while not stop.is_set():
            n = rng.choice([1, 2])
            try:
                async with asyncio.timeout(rng.choice([0.001, 0.01, 1])):
                    async with lim.acquire(n):
                        with lock:
                            held[idx] += n
                            peak.value = max(peak.value, sum(held))
                        try:
                            await asyncio.sleep(rng.choice([0, 0.001, 0.003]))
                        finally:
                            with lock:
                                held[idx] -= n
                iterations[idx] += 1
            except TimeoutError:
                pass

    async def main() -> None:
        await asyncio.gather(*(task() for _ in range(8)))

    asyncio.run(main())
    lim.close()


def test_processes_share_the_capacity_and_a_killed_holder_is_reclaimed(name):
    # 4 permits: while the victim holds 2, a worker asking for 2 still fits
    # (FIFO: a waiter that cannot fit holds up everyone behind it).
    capacity = 4
    lim = berth.SharedLimiter(name, capacity)
    ctx = multiprocessing.get_context("spawn")
    nworkers = 4
    held = ctx.Array("i", nworkers + 1, lock=False)
    iterations = ctx.Array("i", nworkers, lock=False)
    lock = ctx.Lock()
    peak = ctx.Value("i", 0, lock=False)
    stop = ctx.Event()
    holding = ctx.Event()
    victim = ctx.Process(target=_mp_victim, args=(name, nworkers, held, lock, holding))
    workers = [
        ctx.Process(target=_mp_worker, args=(name, i, held, lock, peak, stop, iterations)) for i in range(nworkers)
    ]
    samples: list[int] = []
    try:
        victim.start()
        assert holding.wait(60), "the victim never got its permits"
        for p in workers:
            p.start()
        wait_until(lambda: sum(iterations) >= 20, timeout=60)
        s = lim.stats()
        assert s.in_use >= 2 and s.holders >= 1
        before_kill = list(iterations)
        with lock:
            held[nworkers] = 0  # about to die: count its permits out first
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(10)
        assert victim.exitcode == -signal.SIGKILL

        def reclaimed() -> bool:
            s = lim.stats()
            samples.append(s.in_use)
            return s.reclaimed >= 2

        wait_until(reclaimed, timeout=10)
        # Everyone moves on, with the victim's permits back in circulation.
        wait_until(lambda: sum(iterations) >= sum(before_kill) + 50, timeout=60)
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            samples.append(lim.stats().in_use)
            time.sleep(0.005)
    finally:
        stop.set()
        for p in workers:
            p.join(30)
        for p in [victim, *workers]:
            if p.is_alive():
                p.kill()
                p.join()
    assert all(p.exitcode == 0 for p in workers), [p.exitcode for p in workers]
    assert max(samples) <= capacity, max(samples)
    assert peak.value <= capacity, peak.value
    assert peak.value == capacity  # it did contend
    s = lim.stats()
    assert (s.in_use, s.waiting, s.holders) == (0, 0, 0), s
    assert s.reclaimed == 2
    lim.close()


def test_async_waits_in_several_processes_never_exceed_the_capacity(name):
    capacity = 4
    lim = berth.SharedLimiter(name, capacity)
    ctx = multiprocessing.get_context("spawn")
    nworkers = 3
    held = ctx.Array("i", nworkers, lock=False)
    iterations = ctx.Array("i", nworkers, lock=False)
    lock = ctx.Lock()
    peak = ctx.Value("i", 0, lock=False)
    stop = ctx.Event()
    workers = [
        ctx.Process(target=_mp_async_worker, args=(name, i, held, lock, peak, stop, iterations))
        for i in range(nworkers)
    ]
    samples: list[int] = []
    try:
        for p in workers:
            p.start()
        wait_until(lambda: min(iterations) >= 30, timeout=60)
        for _ in range(40):
            samples.append(lim.stats().in_use)
            time.sleep(0.005)
    finally:
        stop.set()
        for p in workers:
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join()
    assert all(p.exitcode == 0 for p in workers), [p.exitcode for p in workers]
    assert max(samples) <= capacity
    assert peak.value == capacity, peak.value
    s = lim.stats()
    assert (s.in_use, s.waiting, s.holders) == (0, 0, 0), s
    lim.close()
