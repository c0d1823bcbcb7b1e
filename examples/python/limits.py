#!/usr/bin/env python3
"""A concurrency limiter and a token bucket under asyncio: at most 3 sandbox
creations at once (a big one takes 2 permits), and at most 50 API calls per
second with bursts of 5.

Install the binding first (`pip install .` at the repo root), then run
`python3 examples/python/limits.py`.
"""

import asyncio
import time

import berth

creations = berth.Limiter(3)  # permits: creations in flight
api_calls = berth.Bucket(rate=50.0, burst=5)  # tokens: API calls per second


async def create_sandbox(name: str, big: bool) -> None:
    # Waits its turn (first come, first served) without blocking the loop.
    async with creations.acquire(2 if big else 1):
        await api_calls.wait()  # sleeps (asyncio.sleep) until a token is due
        print(f"{time.monotonic() - start:5.3f}s  create {name:<10} in use: {creations.stats().in_use}")
        await asyncio.sleep(0.01)  # the API call


async def main() -> None:
    await asyncio.gather(*(create_sandbox(f"sandbox-{i}", big=i % 4 == 0) for i in range(12)))

    # A wait gives up at a timeout, or on cancellation, holding nothing.
    assert creations.try_acquire(3)
    try:
        async with asyncio.timeout(0.05):
            async with creations.acquire():
                pass
    except TimeoutError:
        print("no permit within 50 ms (all 3 held)")
    creations.release(3)

    # Non-waiting forms: allow() takes a token now or refuses; reserve()
    # says how long to wait, and cancel() gives the tokens back.
    r = api_calls.reserve(5)
    print(f"reserved 5 tokens, act in {r.delay * 1000:.0f} ms; allow() now: {api_calls.allow()}")
    r.cancel()
    print(creations.stats())
    print(api_calls.stats())


start = time.monotonic()
asyncio.run(main())
