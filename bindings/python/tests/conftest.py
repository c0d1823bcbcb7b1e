"""Shared fixtures of the berth binding tests.

Run against the installed package: `pip install .` at the repo root, then
`python -m pytest bindings/python/tests` (from the root or anywhere but
bindings/python, so that the source tree's berth/ is not imported instead).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

import berth

POOL = "ns/warm"


def rss_mib() -> float:
    """The process's resident set now (ru_maxrss is the peak), in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.fixture
def engine() -> Iterator[berth.Engine]:
    e = berth.Engine()
    try:
        yield e
    finally:
        e.close()


@pytest.fixture
def cache() -> Iterator[berth.Cache]:
    """An empty, unsynced cache."""
    c = berth.Cache()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def synced() -> Iterator[berth.Cache]:
    """A cache synced by an empty relist at resourceVersion 1."""
    c = berth.Cache()
    c.replace([], 1)
    try:
        yield c
    finally:
        c.close()


def rows(objects) -> list[tuple[str, str, int, dict[str, str], bytes]]:
    """ObjectViews (or an ObjectList) as plain comparable tuples."""
    return [(o.namespace, o.name, o.resource_version, o.labels, bytes(o.payload)) for o in objects]


def run_threads(target, n: int) -> list[BaseException]:
    """Runs target(i) in n threads started together; returns their exceptions."""
    import threading

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


def names(keys: list[berth.PoolKey] | list[berth.PoolKey | None]) -> list[str]:
    """The names of keys, in order (None for an empty pop)."""
    return [k.name if k is not None else None for k in keys]  # type: ignore[misc]


def drain(engine: berth.Engine, pool: str = POOL, spread: bool = True) -> list[berth.PoolKey]:
    """Pops until the pool is empty."""
    out = []
    pop = engine.pop_spread if spread else engine.pop_fifo
    while (k := pop(pool)) is not None:
        out.append(k)
    return out


# Helpers of the limiter and bucket tests (pytest-asyncio is not used: each
# test runs its own loop with run()).


def run(coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
    """asyncio.run with a deadline, so that a hang fails instead of blocking,
    and failing if any callback of the loop (e.g. the notifier's reader)
    raised: the loop would only log that."""
    loop_errors: list[dict[str, Any]] = []

    async def guarded() -> Any:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
        async with asyncio.timeout(timeout):
            return await coro

    result = asyncio.run(guarded())
    assert loop_errors == [], loop_errors
    return result


def wait_until(pred: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


async def async_wait_until(pred: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


def start_thread(target: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, errors
