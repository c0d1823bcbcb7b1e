"""The asyncio and context-manager parts of berth.Limiter, berth.SharedLimiter
and berth.Bucket.

The native classes (berth._berth) hold the synchronous primitives; _install()
adds the methods below to them when berth._berth is imported.

How an asyncio wait works (berth.h, "Concurrency limiter"):

  1. berth_limiter_acquire_async either grants at once (the task holds the
     permits: no await at all) or queues a ticket whose grant will post a
     token to a berth_notifier.
  2. Each event loop has one notifier (_LoopWaiters, created lazily, kept per
     loop in a WeakKeyDictionary), whose eventfd the loop watches with
     add_reader. The reader callback drains the completed tokens in batches
     and resolves the future waiting for each (a dict token -> future).
  3. When its future resolves, the task claims the ticket
     (berth_limiter_claim) and holds the permits.
  4. If the task is cancelled (task.cancel(), asyncio.timeout, wait_for) or
     closed before it claims, it cancels the ticket (berth_limiter_cancel):
     a waiting ticket leaves the queue, a granted one gives its permits back.
     Either way the task holds nothing, and a token that still arrives finds
     no future and is dropped. So a permit is never leaked or released twice,
     however the cancellation races the grant.

berth.SharedLimiter works the same way with berth_shared_limiter_acquire_async
(its handle's thread waits in the shared region and posts the grants to the
same per-loop notifier), plus one thing: its close() cannot make the library
post the tokens of the waits it drops, so each wait also records its future
in the limiter's _waits (ticket -> future) and close() resolves them
(_wake_closed); the task then finds the limiter closed and holds nothing.

Nothing here blocks the event loop: the only calls into Berth on the loop's
thread are the short, non-blocking ones.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._errors import Error, InternalError

if TYPE_CHECKING:
    from ._berth import Bucket, Limiter, SharedLimiter, _Notifier

__all__: list[str] = []

_get_running_loop = asyncio.get_running_loop
_running_loop_or_none = asyncio.events._get_running_loop
_sleep = asyncio.sleep
# Tokens are unique across every loop and limiter of the process.
_next_token = itertools.count(1).__next__

_Notifier_cls: Any = None  # berth._berth._Notifier, set by _install


class _LoopWaiters:
    """The asynchronous waits of one event loop: a berth notifier whose fd the
    loop watches, and the futures waiting for its tokens."""

    __slots__ = ("notifier", "futures", "loop_ref", "fd", "_finalizer", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.notifier: _Notifier = _Notifier_cls()
        self.fd = self.notifier.fd
        self.futures: dict[int, asyncio.Future[None]] = {}
        self.loop_ref = weakref.ref(loop)
        # The notifier (and its eventfd) goes when the loop is collected, or
        # at the first _waiters() call after the loop closed, whichever is
        # first (a closed loop never reads it again). Not at interpreter exit:
        # the loop may still run in a daemon thread, whose tasks would find
        # the notifier closed under them; the process's end frees it anyway.
        self._finalizer = weakref.finalize(loop, self.notifier.close)
        self._finalizer.atexit = False
        try:
            loop.add_reader(self.fd, self._on_readable)
        except BaseException:
            self._finalizer()
            raise

    def _on_readable(self) -> None:
        # drain() returns every token completed so far (in batches of 256
        # inside) and clears the fd's readiness.
        pop = self.futures.pop
        for token in self.notifier.drain():
            fut = pop(token, None)
            # None or done: the task was cancelled and cancelled its ticket.
            if fut is not None and not fut.done():
                fut.set_result(None)

    def close(self) -> None:
        loop = self.loop_ref()
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self.fd)
        self._finalizer()


_lock = threading.Lock()
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWaiters] = weakref.WeakKeyDictionary()


def _no_loop() -> None:
    return None


# The waiters of the loop used last, for a lookup without the dictionary:
# (weak reference to the loop, its waiters). Replaced as one tuple, so threads
# running other loops never see a mismatched pair.
_last: tuple[Any, Any] = (_no_loop, None)


def _waiters(loop: asyncio.AbstractEventLoop) -> _LoopWaiters:
    global _last
    with _lock:
        w = _by_loop.get(loop)
        if w is None:
            # Loops that have closed will not read their notifiers again.
            for old_loop, old in list(_by_loop.items()):
                if old_loop.is_closed():
                    del _by_loop[old_loop]
                    old.close()
            w = _by_loop[loop] = _LoopWaiters(loop)
        _last = (w.loop_ref, w)
    return w


def _cancel_quietly(limiter: Limiter | SharedLimiter, ticket: int) -> None:
    try:
        limiter._cancel(ticket)
    except Error:
        pass  # closed: the limiter and its tickets are gone, nothing is held


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _wake_closed(futures: Any) -> None:
    """Called by SharedLimiter.close() with the futures of the waits it
    dropped: wakes their tasks (in their loops' threads), which then find the
    limiter closed."""
    for fut in list(futures):
        try:
            fut.get_loop().call_soon_threadsafe(_resolve, fut)
        except RuntimeError:
            pass  # its loop is closed: nobody awaits it any more


async def _acquire(limiter: Limiter | SharedLimiter, n: int, waits: dict[int, Any] | None = None) -> None:
    """Takes n permits of limiter for the running task, waiting in FIFO order
    without blocking the loop. waits: the SharedLimiter's _waits (None for a
    Limiter, whose close() wakes its waits through their tokens)."""
    loop = _get_running_loop()
    last = _last
    w = last[1] if last[0]() is loop else _waiters(loop)
    token = _next_token()
    ticket = limiter._acquire_async(n, w.notifier, token)
    if ticket is None:
        return  # granted at once
    fut = loop.create_future()
    futures = w.futures
    futures[token] = fut
    if waits is not None:
        waits[ticket] = fut
        if limiter.closed:
            # close() ran since _acquire_async (another thread) and may have
            # looked at waits before fut was in it: no need to wait.
            fut.set_result(None)
    try:
        await fut
    except BaseException:
        # Cancelled (or closed) while waiting, or after the grant but before
        # the claim: cancelling gives back whatever the ticket got.
        futures.pop(token, None)
        _cancel_quietly(limiter, ticket)
        raise
    finally:
        if waits is not None:
            waits.pop(ticket, None)
            futures.pop(token, None)  # woken by close(): that token never comes
    # ClosedError here: the limiter was closed while we waited; nothing is held.
    if not limiter._claim(ticket):
        _cancel_quietly(limiter, ticket)
        raise InternalError("the library refused to claim a ticket whose grant was posted")


class _Acquire:
    """`async with limiter.acquire(n):` holds n permits for the block."""

    __slots__ = ("_limiter", "_n")

    def __init__(self, limiter: Limiter | SharedLimiter, n: int) -> None:
        self._limiter = limiter
        self._n = n

    def __aenter__(self) -> Any:
        return _acquire(self._limiter, self._n)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._limiter._release_held(self._n)

    def __repr__(self) -> str:
        return f"<berth.{type(self._limiter).__name__}.acquire n={self._n} of {self._limiter!r}>"


class _SharedAcquire(_Acquire):
    """`async with shared_limiter.acquire(n):`: as _Acquire, with the wait
    recorded for close()."""

    __slots__ = ()

    def __aenter__(self) -> Any:
        lim = self._limiter
        return _acquire(lim, self._n, lim._waits)  # type: ignore[union-attr]


class _Hold:
    """`with limiter.hold(n):` holds n permits for the block (blocking)."""

    __slots__ = ("_limiter", "_n", "_timeout")

    def __init__(self, limiter: Limiter | SharedLimiter, n: int, timeout: float | None) -> None:
        self._limiter = limiter
        self._n = n
        self._timeout = timeout

    def __enter__(self) -> None:
        self._limiter.acquire_blocking(self._n, self._timeout)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._limiter._release_held(self._n)

    def __repr__(self) -> str:
        return f"<berth.{type(self._limiter).__name__}.hold n={self._n} of {self._limiter!r}>"


class _SharedHold(_Hold):
    """`with shared_limiter.hold(n):`: as _Hold, with the permits counted for
    the block (a close() meanwhile gives them back)."""

    __slots__ = ()

    def __enter__(self) -> None:
        self._limiter._acquire_held(self._n, self._timeout)  # type: ignore[union-attr]


# --- methods installed on berth.Limiter --------------------------------------


def acquire(self: Limiter, n: int = 1) -> _Acquire:
    """An async context manager holding n permits for its block:
    `async with limiter.acquire(n): ...`."""
    return _Acquire(self, n)


def hold(self: Limiter, n: int = 1, timeout: float | None = None) -> _Hold:
    """A context manager holding n permits for its block, waiting with
    acquire_blocking(n, timeout): `with limiter.hold(n): ...`."""
    return _Hold(self, n, timeout)


def __aenter__(self: Limiter) -> Any:
    return _acquire(self, 1)


async def __aexit__(
    self: Limiter,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> None:
    self._release_held(1)


# --- methods installed on berth.SharedLimiter --------------------------------


def _shared_acquire(self: SharedLimiter, n: int = 1) -> _SharedAcquire:
    """An async context manager holding n permits for its block:
    `async with limiter.acquire(n): ...`."""
    return _SharedAcquire(self, n)


def _shared_hold(self: SharedLimiter, n: int = 1, timeout: float | None = None) -> _SharedHold:
    """A context manager holding n permits for its block, waiting as
    acquire_blocking(n, timeout): `with limiter.hold(n): ...`."""
    return _SharedHold(self, n, timeout)


def _shared_aenter(self: SharedLimiter) -> Any:
    return _acquire(self, 1, self._waits)


async def _shared_aexit(
    self: SharedLimiter,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> None:
    self._release_held(1)


_shared_acquire.__name__ = "acquire"
_shared_hold.__name__ = "hold"
_shared_aenter.__name__ = "__aenter__"
_shared_aexit.__name__ = "__aexit__"


# --- methods installed on berth.Bucket ---------------------------------------


async def wait(self: Bucket, n: int = 1) -> None:
    """Reserves n tokens and sleeps (asyncio.sleep) until the caller may act;
    cancelled, it cancels the reservation."""
    r = self.reserve(n)
    if r.delay_ns <= 0:
        return
    try:
        await _sleep(r.delay_ns / 1e9)
    except BaseException:
        try:
            r.cancel()
        except Error:
            pass  # the bucket was closed
        raise


def wait_blocking(self: Bucket, n: int = 1) -> None:
    """Reserves n tokens and sleeps this thread (time.sleep, GIL released)
    until the caller may act; interrupted, it cancels the reservation."""
    if _running_loop_or_none() is not None:
        raise RuntimeError(
            "wait_blocking() would block the event loop running in this thread; use 'await bucket.wait(n)'"
        )
    r = self.reserve(n)
    if r.delay_ns <= 0:
        return
    try:
        time.sleep(r.delay_ns / 1e9)
    except BaseException:
        try:
            r.cancel()
        except Error:
            pass
        raise


def _install(limiter_cls: type, bucket_cls: type, notifier_cls: type, shared_cls: type) -> None:
    """Called once by berth._berth at import."""
    global _Notifier_cls
    _Notifier_cls = notifier_cls
    for cls, funcs in (
        (limiter_cls, (acquire, hold, __aenter__, __aexit__)),
        (shared_cls, (_shared_acquire, _shared_hold, _shared_aenter, _shared_aexit)),
        (bucket_cls, (wait, wait_blocking)),
    ):
        for f in funcs:
            f.__qualname__ = f"{cls.__name__}.{f.__name__}"
            f.__module__ = "berth"
            setattr(cls, f.__name__, f)
