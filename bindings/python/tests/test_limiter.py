"""berth.Limiter: permits, FIFO, run-time capacity, blocking and asyncio waits,
cancellation, close()."""

from __future__ import annotations

import asyncio
import builtins
import gc
import random
import os
import signal
import threading
import time
from collections.abc import Coroutine
from typing import Any

import pytest
from conftest import async_wait_until, run, run_threads, start_thread, wait_until

import berth
from berth import _limit


@pytest.fixture
def limiter():
    lim = berth.Limiter(3)
    try:
        yield lim
    finally:
        lim.close()


# --------------------------------------------------------------------------
# try_acquire / release
# --------------------------------------------------------------------------


def test_try_acquire_takes_permits_until_the_capacity(limiter):
    assert limiter.try_acquire(2) is True
    assert limiter.try_acquire() is True
    assert limiter.try_acquire() is False
    s = limiter.stats()
    assert isinstance(s, berth.LimiterStats)
    assert (s.capacity, s.in_use, s.waiting, s.granted, s.rejected) == (3, 3, 0, 2, 1)
    limiter.release(2)
    assert limiter.stats().in_use == 1
    assert limiter.try_acquire(2) is True
    assert limiter.stats().in_use == 3


def test_try_acquire_reason_says_why(limiter):
    assert limiter.try_acquire_reason(2) is berth.Refusal.GRANTED
    assert limiter.stats().in_use == 2  # GRANTED took the permits
    assert limiter.try_acquire_reason(2) is berth.Refusal.AT_CAPACITY
    assert limiter.stats().in_use == 2
    # A waiter queued: even a request that fits is refused (FIFO).
    t, errors = start_thread(lambda: limiter.acquire_blocking(3, timeout=30))
    wait_until(lambda: limiter.stats().waiting == 1)
    assert limiter.try_acquire_reason(1) is berth.Refusal.WAITERS_QUEUED
    assert limiter.stats().in_use == 2
    limiter.release(2)
    t.join(10)
    assert not errors and limiter.stats().in_use == 3


def test_release_more_than_in_use_is_an_invalid_argument_and_changes_nothing(limiter):
    limiter.try_acquire(2)
    with pytest.raises(berth.InvalidArgumentError) as info:
        limiter.release(3)
    assert info.value.status == berth.Status.ERR_INVALID_ARGUMENT
    assert "in use" in info.value.message
    assert limiter.stats().in_use == 2
    limiter.release(2)
    with pytest.raises(berth.InvalidArgumentError):
        limiter.release()
    assert limiter.stats().in_use == 0


@pytest.mark.parametrize("n", [0, -1])
def test_n_below_one_is_an_invalid_argument(limiter, n):
    for call in (limiter.try_acquire, limiter.try_acquire_reason, limiter.release, limiter.acquire_blocking):
        with pytest.raises(berth.InvalidArgumentError):
            call(n)

    async def main() -> None:
        async with limiter.acquire(n):
            pass

    with pytest.raises(berth.InvalidArgumentError):
        run(main())
    assert limiter.stats().in_use == 0


def test_n_above_the_capacity_is_an_invalid_argument(limiter):
    with pytest.raises(berth.InvalidArgumentError, match="capacity"):
        limiter.try_acquire(4)
    # Not a timeout: it could never be granted.
    with pytest.raises(berth.InvalidArgumentError, match="capacity"):
        limiter.acquire_blocking(4, timeout=0.05)
    with pytest.raises(berth.InvalidArgumentError, match="capacity"):
        with limiter.hold(4):
            pass

    async def main() -> None:
        async with limiter.acquire(4):
            pass

    with pytest.raises(berth.InvalidArgumentError, match="capacity"):
        run(main())
    s = limiter.stats()
    assert (s.in_use, s.waiting) == (0, 0)


@pytest.mark.parametrize("bad", [1.0, True, "1", None], ids=repr)
def test_n_must_be_an_int(limiter, bad):
    with pytest.raises(TypeError, match="n"):
        limiter.try_acquire(bad)
    with pytest.raises(TypeError, match="n"):
        limiter.release(bad)


@pytest.mark.parametrize("capacity", [0, -5, 2**63])
def test_bad_capacity_is_an_invalid_argument(capacity):
    with pytest.raises(berth.InvalidArgumentError):
        berth.Limiter(capacity)
    lim = berth.Limiter(2)
    with pytest.raises(berth.InvalidArgumentError):
        lim.capacity = capacity
    assert lim.capacity == 2


def test_capacity_must_be_an_int():
    with pytest.raises(TypeError):
        berth.Limiter(2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        berth.Limiter(True)


# --------------------------------------------------------------------------
# Capacity at run time
# --------------------------------------------------------------------------


def test_lowering_the_capacity_never_revokes_held_permits():
    lim = berth.Limiter(10)
    assert lim.try_acquire(8)
    lim.capacity = 5
    s = lim.stats()
    assert (s.capacity, s.in_use) == (5, 8)
    assert lim.try_acquire_reason(1) is berth.Refusal.AT_CAPACITY
    lim.release(4)  # in use 4
    assert lim.try_acquire(1)  # 5 <= 5
    assert not lim.try_acquire(1)
    lim.set_capacity(7)
    assert lim.capacity == 7
    assert lim.try_acquire(2)
    assert lim.stats().in_use == 7


def test_raising_the_capacity_grants_waiters():
    lim = berth.Limiter(3)
    assert lim.try_acquire(3)
    t, errors = start_thread(lambda: lim.acquire_blocking(2, timeout=30))
    wait_until(lambda: lim.stats().waiting == 1)
    lim.capacity = 5
    t.join(10)
    assert not t.is_alive() and not errors
    s = lim.stats()
    assert (s.in_use, s.waiting) == (5, 0)


def test_a_waiter_over_a_lowered_capacity_waits_until_it_is_raised():
    lim = berth.Limiter(10)
    assert lim.try_acquire(5)
    t, errors = start_thread(lambda: lim.acquire_blocking(8, timeout=30))
    wait_until(lambda: lim.stats().waiting == 1)
    lim.capacity = 4
    lim.release(5)
    time.sleep(0.05)
    s = lim.stats()
    assert (s.in_use, s.waiting, s.waiting_permits) == (0, 1, 8)
    assert t.is_alive()
    lim.capacity = 8
    t.join(10)
    assert not t.is_alive() and not errors
    assert lim.stats().in_use == 8


# --------------------------------------------------------------------------
# Blocking waits (threads)
# --------------------------------------------------------------------------


def test_acquire_blocking_times_out_holding_nothing(limiter):
    assert limiter.try_acquire(3)
    t0 = time.monotonic()
    with pytest.raises(berth.TimeoutError) as info:
        limiter.acquire_blocking(1, timeout=0.05)
    elapsed = time.monotonic() - t0
    assert 0.045 <= elapsed < 5
    assert isinstance(info.value, builtins.TimeoutError)
    assert info.value.status == berth.Status.ERR_TIMEOUT
    assert info.value.status_name == "BERTH_ERR_TIMEOUT"
    s = limiter.stats()
    # The wait is a ticket (so Ctrl-C can end it): its timeout is a cancel.
    assert (s.in_use, s.waiting, s.cancelled) == (3, 0, 1)


def test_ctrl_c_interrupts_a_blocking_wait_holding_nothing(limiter):
    assert threading.current_thread() is threading.main_thread()
    assert limiter.try_acquire(3)
    timer = threading.Timer(0.1, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            limiter.acquire_blocking(1, timeout=None)
    finally:
        timer.cancel()
    s = limiter.stats()
    assert (s.in_use, s.waiting, s.cancelled) == (3, 0, 1)
    limiter.release(3)
    assert limiter.try_acquire(3)  # nothing was kept for the interrupted wait
    limiter.release(3)


def test_acquire_blocking_with_timeout_zero_only_takes_free_permits(limiter):
    limiter.acquire_blocking(3, timeout=0)
    with pytest.raises(berth.TimeoutError):
        limiter.acquire_blocking(1, timeout=0)
    assert limiter.stats().in_use == 3


@pytest.mark.parametrize("timeout", [-1, -0.5, float("nan")], ids=repr)
def test_negative_timeout_is_an_invalid_argument(limiter, timeout):
    with pytest.raises(berth.InvalidArgumentError, match="timeout"):
        limiter.acquire_blocking(1, timeout=timeout)
    assert limiter.stats().in_use == 0


def test_acquire_blocking_is_granted_by_a_release_in_another_thread(limiter):
    assert limiter.try_acquire(3)
    got = threading.Event()

    def waiter() -> None:
        limiter.acquire_blocking(2, timeout=None)
        got.set()

    t, errors = start_thread(waiter)
    wait_until(lambda: limiter.stats().waiting == 1)
    assert not got.is_set()
    limiter.release(1)  # 2 in use + 2 > 3: still waiting
    time.sleep(0.02)
    assert not got.is_set()
    limiter.release(1)  # 1 + 2 <= 3
    assert got.wait(10)
    t.join(10)
    assert not errors
    assert limiter.stats().in_use == 3


def test_acquire_blocking_releases_the_gil_while_it_waits(limiter):
    assert limiter.try_acquire(3)
    t, errors = start_thread(lambda: limiter.acquire_blocking(1, timeout=0.3))
    # While the thread waits inside Berth, this thread keeps running Python.
    spins = 0
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:
        spins += 1
    t.join(10)
    assert spins > 10_000
    assert len(errors) == 1 and isinstance(errors[0], berth.TimeoutError)


def test_hold_holds_for_the_block_and_releases_on_error(limiter):
    with limiter.hold(2):
        assert limiter.stats().in_use == 2
    assert limiter.stats().in_use == 0
    with pytest.raises(KeyError):
        with limiter.hold(3, timeout=1):
            assert limiter.stats().in_use == 3
            raise KeyError("x")
    assert limiter.stats().in_use == 0


def test_hold_timeout_raises_and_holds_nothing(limiter):
    assert limiter.try_acquire(2)
    entered = False
    with pytest.raises(berth.TimeoutError):
        with limiter.hold(2, timeout=0.02):
            entered = True
    assert not entered
    assert limiter.stats().in_use == 2


def test_there_is_no_synchronous_with_on_the_limiter_itself(limiter):
    # `with limiter:` would block an event loop if written in a coroutine by
    # mistake; hold() is the explicit way.
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


def test_threads_never_exceed_the_capacity_and_leave_nothing_held():
    lim = berth.Limiter(5)
    lock = threading.Lock()
    held = [0, 0]  # now, max

    def worker(i: int) -> None:
        rng = random.Random(i)
        for _ in range(300):
            n = rng.choice([1, 1, 2, 3, 5])
            with lim.hold(n, timeout=30):
                with lock:
                    held[0] += n
                    held[1] = max(held[1], held[0])
                    assert held[0] <= 5
                with lock:
                    held[0] -= n

    assert run_threads(worker, 8) == []
    s = lim.stats()
    assert (s.in_use, s.waiting, s.granted) == (0, 0, 8 * 300)
    assert held[1] == 5


# --------------------------------------------------------------------------
# asyncio
# --------------------------------------------------------------------------


def test_async_acquire_granted_at_once_does_not_yield(limiter):
    async def main() -> None:
        ran = False

        async def other() -> None:
            nonlocal ran
            ran = True

        task = asyncio.create_task(other())
        async with limiter.acquire(2):
            assert limiter.stats().in_use == 2
            assert not ran  # the loop never got control
        async with limiter:
            assert limiter.stats().in_use == 1
            assert not ran
        assert limiter.stats().in_use == 0
        await task
        assert ran

    run(main())


def test_async_with_limiter_is_acquire_one(limiter):
    async def main() -> None:
        async with limiter:
            async with limiter:
                assert limiter.stats().in_use == 2
            assert limiter.stats().in_use == 1
        assert limiter.stats().in_use == 0

    run(main())


def test_async_acquire_releases_when_the_block_raises(limiter):
    async def main() -> None:
        with pytest.raises(KeyError):
            async with limiter.acquire(3):
                raise KeyError("x")
        assert limiter.stats().in_use == 0

    run(main())


def test_async_waiters_respect_the_capacity_and_all_finish():
    lim = berth.Limiter(4)

    async def main() -> int:
        held = 0
        peak = 0
        done = 0

        async def task(i: int) -> None:
            nonlocal held, peak, done
            n = 1 + i % 3
            async with lim.acquire(n):
                held += n
                peak = max(peak, held)
                assert held <= 4
                assert lim.stats().in_use >= held
                for _ in range(i % 3):
                    await asyncio.sleep(0)
                held -= n
            done += 1

        await asyncio.gather(*(task(i) for i in range(2000)))
        assert peak == 4
        return done

    assert run(main()) == 2000
    s = lim.stats()
    assert (s.in_use, s.waiting, s.granted) == (0, 0, 2000)


def test_async_waiters_are_served_first_come_first_served():
    lim = berth.Limiter(10)

    async def main() -> list[str]:
        order: list[str] = []
        assert lim.try_acquire(9)

        async def task(name: str, n: int) -> None:
            async with lim.acquire(n):
                order.append(name)
                await asyncio.sleep(0.001)

        tasks = [asyncio.create_task(task("big", 10))]
        await async_wait_until(lambda: lim.stats().waiting == 1)
        for i in range(5):
            tasks.append(asyncio.create_task(task(f"small{i}", 1)))
        await async_wait_until(lambda: lim.stats().waiting == 6)
        # One permit is free, but nobody barges past the big waiter.
        assert lim.try_acquire_reason(1) is berth.Refusal.WAITERS_QUEUED
        await asyncio.sleep(0.01)
        assert order == []
        lim.release(9)
        await asyncio.gather(*tasks)
        return order

    assert run(main()) == ["big", "small0", "small1", "small2", "small3", "small4"]
    assert lim.stats().in_use == 0


def test_a_big_waiter_is_not_starved_by_a_stream_of_small_ones():
    lim = berth.Limiter(10)

    async def main() -> int:
        stop = asyncio.Event()
        rounds = 0

        async def small() -> None:
            nonlocal rounds
            while not stop.is_set():
                async with lim.acquire(1):
                    rounds += 1
                    await asyncio.sleep(0)

        smalls = [asyncio.create_task(small()) for _ in range(30)]
        await async_wait_until(lambda: rounds > 100)
        # The smalls keep the limiter busy: with barging (asyncio.Semaphore
        # style) a request for all 10 permits would wait forever.
        async with asyncio.timeout(10):
            async with lim.acquire(10):
                assert lim.stats().in_use == 10
        stop.set()
        await asyncio.gather(*smalls)
        return rounds

    assert run(main()) > 100
    assert lim.stats().in_use == 0


def test_async_wait_never_blocks_the_event_loop():
    lim = berth.Limiter(1)
    assert lim.try_acquire(1)  # held by "another thread" below

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
            async with lim:
                done += 1

        hb = asyncio.create_task(heartbeat())
        waiters = [asyncio.create_task(waiter()) for _ in range(100)]
        await async_wait_until(lambda: lim.stats().waiting == 100)
        ticks_before = ticks
        # The permit comes back from another thread, 0.3 s later.
        threading.Timer(0.3, lambda: lim.release(1)).start()
        await asyncio.gather(*waiters)
        stop = True
        await hb
        return ticks - ticks_before, longest_gap, done

    ticks, gap, done = run(main())
    assert done == 100
    assert ticks >= 30, ticks  # ~300 expected with a free loop
    assert gap < 0.25, gap  # a blocked loop would stall for the whole 0.3 s
    s = lim.stats()
    assert (s.in_use, s.waiting) == (0, 0)


def test_cancelling_a_waiting_task_leaves_the_queue(limiter):
    async def main() -> None:
        assert limiter.try_acquire(3)
        entered = False

        async def waiter() -> None:
            nonlocal entered
            async with limiter.acquire(2):
                entered = True

        task = asyncio.create_task(waiter())
        await async_wait_until(lambda: limiter.stats().waiting == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        s = limiter.stats()
        assert (s.in_use, s.waiting, s.cancelled) == (3, 0, 1)
        limiter.release(3)
        assert not entered
        assert limiter.stats().in_use == 0

    run(main())


def test_cancel_racing_the_grant_gives_the_permits_back(limiter):
    async def main() -> None:
        assert limiter.try_acquire(3)

        async def waiter() -> None:
            async with limiter.acquire(3):
                raise AssertionError("a cancelled task entered the block")

        task = asyncio.create_task(waiter())
        await async_wait_until(lambda: limiter.stats().waiting == 1)
        limiter.release(3)  # grants the ticket: its token is on its way
        s = limiter.stats()
        assert (s.in_use, s.waiting) == (3, 0)  # granted, not yet claimed
        task.cancel()  # before the loop drains the token
        with pytest.raises(asyncio.CancelledError):
            await task
        s = limiter.stats()
        assert (s.in_use, s.waiting, s.cancelled) == (0, 0, 1)
        await asyncio.sleep(0.01)  # the stale token arrives and is dropped
        assert _limit._waiters(asyncio.get_running_loop()).futures == {}
        async with limiter.acquire(3):  # every permit is free again
            pass

    run(main())
    assert limiter.stats().in_use == 0


def test_cancel_between_the_grant_and_the_reader_leaves_a_cancelled_future_alone(limiter):
    async def main() -> None:
        assert limiter.try_acquire(3)

        async def waiter() -> None:
            async with limiter.acquire(3):
                raise AssertionError("a cancelled task entered the block")

        task = asyncio.create_task(waiter())
        await async_wait_until(lambda: limiter.stats().waiting == 1)
        limiter.release(3)  # the notifier's fd becomes readable
        # Runs before the reader in the next loop iteration: the reader then
        # finds the task's future cancelled, the task not yet woken.
        asyncio.get_running_loop().call_soon(task.cancel)
        with pytest.raises(asyncio.CancelledError):
            await task
        s = limiter.stats()
        assert (s.in_use, s.waiting, s.cancelled) == (0, 0, 1)

    run(main())


def test_cancel_after_the_future_resolved_but_before_the_claim(limiter, monkeypatch):
    victims: list[asyncio.Task[None]] = []
    resolved_when_cancelled: list[bool] = []
    original = _limit._LoopWaiters._on_readable

    def on_readable(self: _limit._LoopWaiters) -> None:
        futures = dict(self.futures)
        original(self)
        # The future is resolved and the task's wake-up is scheduled; cancel
        # the task before it can claim its ticket.
        for fut in futures.values():
            resolved_when_cancelled.append(fut.done() and not fut.cancelled())
        for t in victims:
            t.cancel()

    monkeypatch.setattr(_limit._LoopWaiters, "_on_readable", on_readable)

    async def main() -> None:
        assert limiter.try_acquire(3)

        async def waiter() -> None:
            async with limiter.acquire(2):
                raise AssertionError("a cancelled task entered the block")

        task = asyncio.create_task(waiter())
        victims.append(task)
        await async_wait_until(lambda: limiter.stats().waiting == 1)
        limiter.release(3)
        with pytest.raises(asyncio.CancelledError):
            await task
        s = limiter.stats()
        assert (s.in_use, s.waiting, s.cancelled) == (0, 0, 1)

    run(main())
    assert resolved_when_cancelled == [True]


def test_thousands_of_random_cancellations_leak_nothing():
    lim = berth.Limiter(5)
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
        for i in range(4000):
            n = rng.choice([1, 1, 1, 2, 3, 5])
            sleeps = rng.randint(0, 3)
            kind = rng.random()
            if kind < 0.3:
                coro: Coroutine[Any, Any, None] = with_wait_for(n, sleeps, rng.choice([0, 1e-6, 1e-5, 1e-4, 1e-3]))
            elif kind < 0.45:
                coro = with_timeout(n, sleeps, rng.choice([0, 1e-5, 1e-3]))
            else:
                coro = body(n, sleeps)
            task = loop.create_task(coro)
            tasks.append(task)
            r = rng.random()
            if r < 0.15:
                task.cancel()  # before it even starts
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
        await asyncio.sleep(0.01)  # stale tokens of cancelled grants arrive
        assert _limit._waiters(loop).futures == {}
        return outcomes

    outcomes = run(main())
    assert sum(outcomes.values()) == 4000
    # Every kind of ending happened, many times.
    assert all(v > 200 for v in outcomes.values()), outcomes
    s = lim.stats()
    assert (s.in_use, s.waiting, s.waiting_permits) == (0, 0, 0), s
    assert s.cancelled > 100, s


def test_limiter_shared_by_event_loops_in_several_threads():
    lim = berth.Limiter(3)

    def worker(i: int) -> None:
        held = 0

        async def task(j: int) -> None:
            nonlocal held
            async with lim.acquire(1 + j % 2):
                held += 1
                assert lim.stats().in_use <= 3
                await asyncio.sleep(0)
                held -= 1

        async def main() -> None:
            await asyncio.gather(*(task(j) for j in range(300)))

        run(main())
        assert held == 0

    assert run_threads(worker, 4) == []
    s = lim.stats()
    assert (s.in_use, s.waiting, s.granted) == (0, 0, 1200)


def test_each_loop_gets_one_notifier_and_closed_loops_give_theirs_back():
    lim = berth.Limiter(1)

    async def contend() -> tuple[asyncio.AbstractEventLoop, _limit._LoopWaiters]:
        loop = asyncio.get_running_loop()

        async def task() -> None:
            async with lim:
                await asyncio.sleep(0)

        await asyncio.gather(*(task() for _ in range(10)))
        w = _limit._waiters(loop)
        await asyncio.gather(*(task() for _ in range(10)))
        assert _limit._waiters(loop) is w  # one per loop
        assert _limit._by_loop[loop] is w
        return loop, w

    first_loop, first = run(contend())  # keeps the closed loop alive
    assert first_loop.is_closed() and not first.notifier.closed
    second_loop, second = run(contend())
    assert second is not first
    assert first.notifier.closed  # swept: its loop was closed
    assert first_loop not in _limit._by_loop
    # A collected loop gives its notifier back too.
    del second_loop
    gc.collect()
    assert second.notifier.closed
    assert len(_limit._by_loop) == 0
    assert lim.stats().in_use == 0


# --------------------------------------------------------------------------
# close()
# --------------------------------------------------------------------------

LIMITER_CALLS = {
    "try_acquire": lambda lim: lim.try_acquire(1),
    "try_acquire_reason": lambda lim: lim.try_acquire_reason(1),
    "acquire_blocking": lambda lim: lim.acquire_blocking(1, timeout=0),
    "release": lambda lim: lim.release(1),
    "set_capacity": lambda lim: lim.set_capacity(5),
    "stats": lambda lim: lim.stats(),
    "capacity": lambda lim: lim.capacity,
    "capacity=": lambda lim: setattr(lim, "capacity", 4),
    "hold": lambda lim: lim.hold(1).__enter__(),
    "async acquire": lambda lim: run(lim.acquire(1).__aenter__()),
    "async with": lambda lim: run(lim.__aenter__()),
}


@pytest.mark.parametrize("call", LIMITER_CALLS)
def test_every_method_of_a_closed_limiter_raises_closed_error(call):
    lim = berth.Limiter(2)
    lim.close()
    assert lim.closed
    with pytest.raises(berth.ClosedError):
        LIMITER_CALLS[call](lim)


def test_close_is_idempotent_and_shows_in_repr():
    lim = berth.Limiter(2)
    assert repr(lim) == "<berth.Limiter capacity=2 in_use=0 waiting=0>"
    lim.close()
    lim.close()
    assert repr(lim) == "<berth.Limiter closed>"


def test_leaving_a_block_after_close_is_a_no_op():
    lim = berth.Limiter(2)
    with lim.hold(1):
        lim.close()
    lim2 = berth.Limiter(2)

    async def main() -> None:
        async with lim2.acquire(2):
            lim2.close()

    run(main())
    with pytest.raises(berth.ClosedError):
        lim2.release(1)


def test_close_wakes_a_blocked_thread_with_closed_error():
    lim = berth.Limiter(1)
    assert lim.try_acquire(1)
    t, errors = start_thread(lambda: lim.acquire_blocking(1, timeout=None))
    wait_until(lambda: lim.stats().waiting == 1)
    # close() waits for the calls in flight: it would hang if the blocked
    # thread were not woken, so it runs in a thread of its own here.
    closer = threading.Thread(target=lim.close, daemon=True)
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), "close() hangs on the blocked thread"
    assert lim.closed
    t.join(10)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], berth.ClosedError), errors


def test_close_wakes_async_waiters_with_closed_error():
    lim = berth.Limiter(1)

    async def main() -> list[BaseException | None]:
        assert lim.try_acquire(1)

        async def waiter() -> None:
            async with lim:
                raise AssertionError("entered a closed limiter")

        tasks = [asyncio.create_task(waiter()) for _ in range(20)]
        await async_wait_until(lambda: lim.stats().waiting == 20)
        lim.close()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = run(main(), timeout=10)
    assert all(isinstance(r, berth.ClosedError) for r in results), results


def test_a_dropped_limiter_is_freed():
    import weakref

    lim = berth.Limiter(2)
    lim.try_acquire(1)
    ref = weakref.ref(lim)
    del lim
    gc.collect()
    assert ref() is None
