"""Every public method of every class, called with arguments of every wrong
type and value, open and after close(): each call returns or raises a
berth.Error, TypeError, ValueError or OverflowError, and never crashes the
process or raises anything else (a SystemError would mean the extension
misused the C API).

Each call gets fresh objects, so a call that succeeds (set_capacity(1), an
acquire) cannot make a later one block."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import berth

ALLOWED = (berth.Error, TypeError, ValueError, OverflowError, asyncio.TimeoutError)

# Wrong in type or in value for some parameter of every method.
VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**70,
    1.5,
    float("nan"),
    float("inf"),
    "",
    "x",
    "\udc80",  # a lone surrogate: not encodable as UTF-8
    "a\0b",
    b"x",
    object(),
    [],
    {},
    ("ns", "a"),
]

_names = itertools.count()


def _shared_name() -> str:
    return f"sweep-{os.getpid()}-{next(_names)}"


MAKERS: dict[str, Callable[[], Any]] = {
    "Engine": lambda: berth.Engine(),
    "Cache": lambda: _synced_cache(),
    "Selector": lambda: berth.Selector("app=web"),
    "Limiter": lambda: berth.Limiter(10**6),
    "Bucket": lambda: berth.Bucket(rate=1e9, burst=1000),
    "SharedLimiter": lambda: berth.SharedLimiter(_shared_name(), 10**6),
}


def _synced_cache() -> berth.Cache:
    c = berth.Cache()
    c.replace([], 1)
    return c


def _methods(obj: Any) -> list[str]:
    return sorted(
        n
        for n in dir(type(obj))
        if not n.startswith("_") and n not in ("close", "unlink") and callable(getattr(obj, n))
    )


def _argument_lists(max_args: int = 4) -> Iterator[tuple[Any, ...]]:
    yield ()
    for k in range(1, max_args + 1):
        for v in VALUES:  # one bad value in each position, the others harmless
            for pos in range(k):
                args = [1] * k
                args[pos] = v
                yield tuple(args)
        for v in VALUES:
            yield (v,) * k


def _drive(result: Any) -> None:
    """Awaits an awaitable and enters a context manager (sync or async), as a
    caller would: acquire() and hold() give context managers."""
    if inspect.isawaitable(result):

        async def run_await() -> None:
            await asyncio.wait_for(result, 2)

        asyncio.run(run_await())
    elif hasattr(result, "__aenter__"):

        async def run_async_with() -> None:
            async with result:
                pass

        asyncio.run(asyncio.wait_for(run_async_with(), 2))
    elif hasattr(result, "__enter__"):
        with result:
            pass


def _call(obj: Any, method: str, args: tuple[Any, ...]) -> None:
    try:
        _drive(getattr(obj, method)(*args))
    except ALLOWED:
        pass


def _close(obj: Any) -> None:
    obj.close()
    if isinstance(obj, berth.SharedLimiter):
        berth.SharedLimiter.unlink(obj.name)


@pytest.mark.parametrize("kind", list(MAKERS))
@pytest.mark.parametrize("closed", [False, True], ids=["open", "closed"])
def test_every_method_with_wrong_arguments_raises_cleanly(kind: str, closed: bool) -> None:
    probe = MAKERS[kind]()
    methods = _methods(probe)
    _close(probe)
    assert methods, kind
    calls = 0
    for method in methods:
        for args in _argument_lists():
            obj = MAKERS[kind]()
            try:
                if closed:
                    obj.close()
                _call(obj, method, args)
                calls += 1
            finally:
                _close(obj)
    assert calls > 100 * len(methods) // 2


def test_closed_objects_raise_closed_error_for_every_method() -> None:
    for kind, make in MAKERS.items():
        obj = make()
        methods = _methods(obj)
        _close(obj)
        for method in methods:
            # No arguments: the object refuses before it looks at them, unless
            # Python's binding of the arguments fails first (TypeError).
            with pytest.raises((berth.ClosedError, TypeError)):
                _drive(getattr(obj, method)())
