"""The asyncio part of berth.Cache: replace_async.

The native class (berth._berth.Cache) holds the synchronous primitive,
_replace_stoppable(objects, resource_version, stop): replace(), polling
stop.is_set() between chunks of objects while it builds the list (it gives
the GIL up between chunks), False, the cache unchanged, if it stopped.
_install() adds replace_async to the class when berth._berth is imported.

replace_async runs that primitive in the loop's default executor (as
asyncio.to_thread does), so the loop keeps running while the objects are
read and while Berth swaps them in (that part holds no GIL at all).

Cancellation: the awaiting task sets stop, then waits for the worker thread
to return before CancelledError propagates. Berth's replace is all or
nothing, so the cache is then either unchanged (the build stopped, or had
not reached Berth) or fully replaced (Berth was already swapping the objects
in, which is not interrupted); never half of it, and nothing of that call
runs after the task has seen CancelledError (so a following replace cannot
be overtaken by it).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._berth import Cache

__all__: list[str] = []


async def replace_async(self: Cache, objects: Any, resource_version: int) -> None:
    """replace() in a worker thread, without blocking the event loop;
    cancelled, the cache is unchanged or fully replaced (see the module)."""
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    fut = loop.run_in_executor(
        None, functools.partial(self._replace_stoppable, objects, resource_version, stop)
    )
    try:
        await asyncio.shield(fut)
    except asyncio.CancelledError:
        stop.set()
        # Wait for the worker, however often this task is cancelled again;
        # what it did is decided once it returns.
        while not fut.done():
            try:
                await asyncio.shield(fut)
            except asyncio.CancelledError:
                pass
            except BaseException:
                break  # the worker's own error; the cancellation wins
        if not fut.cancelled():
            fut.exception()  # retrieved: no "exception was never retrieved" log
        raise


def _install(cache_cls: type) -> None:
    """Called once by berth._berth at import."""
    replace_async.__qualname__ = f"{cache_cls.__name__}.replace_async"
    replace_async.__module__ = "berth"
    setattr(cache_cls, "replace_async", replace_async)
