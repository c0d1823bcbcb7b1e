"""berth.Bucket: golang.org/x/time/rate semantics at explicit times, and the
waits (asyncio and blocking) in real time, kept short with fast rates."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest
from conftest import async_wait_until, run

import berth

MS = 1_000_000  # ns


@pytest.fixture
def t0() -> int:
    return berth.clock_now_ns()


# --------------------------------------------------------------------------
# Exact semantics at explicit times
# --------------------------------------------------------------------------


def test_the_bucket_starts_full_and_refills_at_the_rate(t0):
    b = berth.Bucket(10, 5)  # one token per 100 ms
    assert [b.allow(1, t0) for _ in range(6)] == [True] * 5 + [False]
    assert b.allow(1, t0 + 99 * MS) is False
    assert b.allow(1, t0 + 100 * MS) is True
    assert b.allow(1, t0 + 100 * MS) is False
    assert b.allow(2, t0 + 300 * MS) is True
    # Refill stops at the burst.
    assert b.stats(t0 + 10_000 * MS).tokens == 5


def test_allow_never_goes_into_debt(t0):
    b = berth.Bucket(10, 5)
    assert b.allow(3, t0)
    assert b.allow(3, t0) is False  # 2 left: nothing taken
    assert b.stats(t0).tokens == pytest.approx(2)
    assert b.allow(2, t0)


def test_reserve_goes_into_debt_and_says_how_long_to_wait(t0):
    b = berth.Bucket(10, 5)
    r0 = b.reserve(5, t0)
    assert isinstance(r0, berth.Reservation)
    assert (r0.delay_ns, r0.delay, r0.tokens, r0.time_to_act_ns) == (0, 0.0, 5, t0)
    r = b.reserve(3, t0)
    assert r.delay_ns == 300 * MS and r.delay == pytest.approx(0.3)
    assert r.time_to_act_ns == t0 + 300 * MS
    assert (r.tokens, r.rate) == (3, 10.0)
    assert b.stats(t0).tokens == pytest.approx(-3)
    # Later reservations queue up behind it.
    assert b.reserve(1, t0).delay_ns == 400 * MS
    assert b.allow(1, t0 + 350 * MS) is False


def test_cancel_before_the_time_to_act_gives_the_tokens_back(t0):
    b = berth.Bucket(10, 5)
    b.reserve(5, t0)
    r = b.reserve(3, t0)
    r.cancel(now_ns=t0)
    assert r.cancelled
    assert b.stats(t0).tokens == pytest.approx(0)
    # A second cancel gives back nothing more (Berth itself would).
    r.cancel(now_ns=t0)
    assert b.stats(t0).tokens == pytest.approx(0)


def test_cancel_keeps_the_tokens_reserved_after_it(t0):
    b = berth.Bucket(10, 5)
    b.reserve(5, t0)
    r1 = b.reserve(3, t0)  # tokens -3, acts at +300 ms
    b.reserve(2, t0)  # tokens -5, acts at +500 ms
    r1.cancel(now_ns=t0)
    # x/time/rate: restore 3 - rate * (500 ms - 300 ms) = 1 token.
    assert b.stats(t0).tokens == pytest.approx(-4)


def test_cancel_after_the_time_to_act_is_a_no_op(t0):
    b = berth.Bucket(10, 5)
    b.reserve(5, t0)
    r = b.reserve(2, t0)  # acts at +200 ms
    r.cancel(now_ns=t0 + 250 * MS)
    assert b.stats(t0 + 250 * MS).tokens == pytest.approx(0.5)


def test_rate_and_burst_change_at_run_time_keeping_the_tokens(t0):
    b = berth.Bucket(10, 5)
    assert b.allow(5, t0)
    b.set_rate(100, now_ns=t0 + 100 * MS)  # 1 token accrued at the old rate
    assert b.stats(t0 + 100 * MS) == berth.BucketStats(100.0, 5, pytest.approx(1))
    assert b.stats(t0 + 120 * MS).tokens == pytest.approx(3)  # 2 more at 100/s
    b.set_burst(2, now_ns=t0 + 120 * MS)  # a lower burst caps the tokens at once
    assert b.stats(t0 + 120 * MS) == berth.BucketStats(100.0, 2, pytest.approx(2))
    with pytest.raises(berth.InvalidArgumentError, match="burst"):
        b.allow(3, t0 + 120 * MS)


def test_rate_and_burst_properties():
    b = berth.Bucket(10, 5)
    assert (b.rate, b.burst) == (10.0, 5)
    b.rate = 250.5
    b.burst = 7
    assert (b.rate, b.burst) == (250.5, 7)
    s = b.stats()
    assert (s.rate, s.burst) == (250.5, 7)
    with pytest.raises(berth.InvalidArgumentError):
        b.rate = 0
    with pytest.raises(berth.InvalidArgumentError):
        b.burst = 0
    assert (b.rate, b.burst) == (250.5, 7)


def test_an_infinite_rate_never_limits(t0):
    b = berth.Bucket(math.inf, 1)
    assert all(b.allow(1, t0) for _ in range(1000))
    assert b.reserve(1, t0).delay_ns == 0
    assert b.rate == math.inf


@pytest.mark.parametrize("rate", [0, -1.0, math.nan, -math.inf], ids=repr)
def test_bad_rate_is_an_invalid_argument(rate):
    with pytest.raises(berth.InvalidArgumentError):
        berth.Bucket(rate, 1)


@pytest.mark.parametrize("burst", [0, -1, 2**63])
def test_bad_burst_is_an_invalid_argument(burst):
    with pytest.raises(berth.InvalidArgumentError):
        berth.Bucket(1.0, burst)


def test_a_rate_too_slow_for_one_token_in_int64_ns_is_an_invalid_argument():
    # 1e-300 tokens/s: one token in 1e309 ns; two reserves overflowed int64.
    with pytest.raises(berth.InvalidArgumentError, match="INT64_MAX"):
        berth.Bucket(1e-300, 1)
    b = berth.Bucket(1.1e-10, 1)  # ~288 years a token: fits
    with pytest.raises(berth.InvalidArgumentError, match="too slow"):
        b.set_rate(1e-10)
    assert b.rate == 1.1e-10


def test_a_reservation_due_after_int64_max_is_refused_and_takes_nothing():
    end = 2**63 - 1
    b = berth.Bucket(10, 1)
    assert b.reserve(1, end - 2).time_to_act_ns == end - 2
    with pytest.raises(berth.InvalidArgumentError, match="INT64_MAX"):
        b.reserve(1, end - 2)  # due 100 ms later: it wrapped negative
    assert b.stats(end - 2).tokens == pytest.approx(0)
    # Due exactly at the end: granted, and a cancel gives it back.
    b2 = berth.Bucket(10, 1)
    b2.reserve(1, end - 100 * MS)
    r = b2.reserve(1, end - 100 * MS)
    assert (r.time_to_act_ns, r.delay_ns) == (end, 100 * MS)
    r.cancel(now_ns=end - 100 * MS)
    assert b2.stats(end - 100 * MS).tokens == pytest.approx(0)


def test_argument_types():
    with pytest.raises(TypeError):
        berth.Bucket("10", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        berth.Bucket(10, 1.0)  # type: ignore[arg-type]
    b = berth.Bucket(10, 5)
    with pytest.raises(TypeError):
        b.allow(1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        b.reserve(True)


def test_n_out_of_range_is_an_invalid_argument(t0):
    b = berth.Bucket(10, 5)
    for call in (b.allow, b.reserve):
        with pytest.raises(berth.InvalidArgumentError, match="burst"):
            call(6, t0)
        with pytest.raises(berth.InvalidArgumentError):
            call(0, t0)
    assert b.stats(t0).tokens == 5  # nothing taken


def test_explicit_times_must_not_be_negative():
    b = berth.Bucket(10, 5)
    with pytest.raises(berth.InvalidArgumentError, match="now_ns"):
        b.allow(1, now_ns=-5)
    assert b.stats().tokens == 5


def test_clock_now_ns_is_the_monotonic_clock():
    a = time.monotonic_ns()
    b = berth.clock_now_ns()
    c = time.monotonic_ns()
    assert a <= b <= c


# --------------------------------------------------------------------------
# Waiting in real time (1000 tokens/s: 1 ms per token)
# --------------------------------------------------------------------------


def test_async_wait_paces_the_caller():
    b = berth.Bucket(1000, 1)

    async def main() -> float:
        start = time.monotonic()
        for _ in range(20):
            await b.wait()
        return time.monotonic() - start

    elapsed = run(main())
    assert 0.018 <= elapsed < 2, elapsed


def test_async_wait_with_tokens_at_hand_does_not_yield():
    b = berth.Bucket(1000, 5)

    async def main() -> None:
        ran = False

        async def other() -> None:
            nonlocal ran
            ran = True

        task = asyncio.create_task(other())
        await b.wait(5)
        assert not ran
        await task

    run(main())


def test_async_wait_does_not_block_the_loop():
    b = berth.Bucket(200, 1)  # 5 ms per token

    async def main() -> tuple[int, int, float]:
        ticks = 0
        stop = False
        start = time.monotonic()

        async def heartbeat() -> None:
            nonlocal ticks
            while not stop:
                await asyncio.sleep(0.001)
                ticks += 1

        done = 0

        async def waiter() -> None:
            nonlocal done
            await b.wait()
            done += 1

        hb = asyncio.create_task(heartbeat())
        # Reservations due at 0, 5, ..., 195 ms: ~0.2 s if the waits overlap,
        # ~3.9 s if each blocked the loop for its whole delay.
        await asyncio.gather(*(waiter() for _ in range(40)))
        elapsed = time.monotonic() - start
        stop = True
        await hb
        return ticks, done, elapsed

    ticks, done, elapsed = run(main())
    assert done == 40
    assert 0.19 <= elapsed < 1.5, elapsed
    assert ticks >= 60, ticks


def test_cancelling_an_async_wait_cancels_its_reservation():
    b = berth.Bucket(10, 1)  # 100 ms per token

    async def main() -> None:
        assert b.allow()
        task = asyncio.create_task(b.wait())
        await async_wait_until(lambda: b.stats().tokens < -0.5)  # reserved, in debt
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The token came back: without the cancel it would be about -1.
        assert b.stats().tokens > -0.2

    run(main())


def test_async_wait_timeout_cancels_its_reservation():
    b = berth.Bucket(10, 1)

    async def main() -> None:
        assert b.allow()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(b.wait(), 0.01)
        assert b.stats().tokens > -0.2

    run(main())


def test_wait_blocking_paces_a_thread():
    b = berth.Bucket(1000, 1)
    elapsed: list[float] = []

    def worker() -> None:
        start = time.monotonic()
        for _ in range(20):
            b.wait_blocking()
        elapsed.append(time.monotonic() - start)

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert len(elapsed) == 1 and 0.018 <= elapsed[0] < 2, elapsed


def test_wait_blocking_refuses_to_block_an_event_loop():
    b = berth.Bucket(1000, 1)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="event loop"):
            b.wait_blocking()

    run(main())
    assert b.stats().tokens == 1  # nothing reserved


def test_waits_check_n_like_reserve():
    b = berth.Bucket(1000, 2)
    with pytest.raises(berth.InvalidArgumentError):
        b.wait_blocking(3)

    async def main() -> None:
        with pytest.raises(berth.InvalidArgumentError):
            await b.wait(3)

    run(main())


# --------------------------------------------------------------------------
# close()
# --------------------------------------------------------------------------

BUCKET_CALLS = {
    "allow": lambda b: b.allow(),
    "reserve": lambda b: b.reserve(),
    "set_rate": lambda b: b.set_rate(5.0),
    "set_burst": lambda b: b.set_burst(2),
    "stats": lambda b: b.stats(),
    "rate": lambda b: b.rate,
    "burst=": lambda b: setattr(b, "burst", 3),
    "wait_blocking": lambda b: b.wait_blocking(),
    "wait": lambda b: run(b.wait()),
}


@pytest.mark.parametrize("call", BUCKET_CALLS)
def test_every_method_of_a_closed_bucket_raises_closed_error(call):
    b = berth.Bucket(10, 2)
    b.close()
    with pytest.raises(berth.ClosedError):
        BUCKET_CALLS[call](b)


def test_bucket_context_manager_closes_and_reservations_then_refuse():
    with berth.Bucket(10, 2) as b:
        assert repr(b) == "<berth.Bucket rate=10.0 burst=2>"
        r = b.reserve(2)
        r2 = b.reserve(1)
    assert b.closed and repr(b) == "<berth.Bucket closed>"
    with pytest.raises(berth.ClosedError):
        r2.cancel()
    del r
