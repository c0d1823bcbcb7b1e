"""Plain, immutable value types taken and returned by berth.Engine, berth.Cache,
berth.Limiter, berth.SharedLimiter and berth.Bucket (and Reservation, which can
also cancel itself)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple, Union

if TYPE_CHECKING:
    from ._berth import Bucket

__all__ = [
    "PoolKey",
    "PoolStats",
    "NodeStat",
    "EventType",
    "Event",
    "Object",
    "CacheStats",
    "BytesLike",
    "Refusal",
    "LimiterStats",
    "SharedLimiterStats",
    "BucketStats",
    "Reservation",
]

BytesLike = Union[bytes, bytearray, memoryview]
"""What a payload may be: any C-contiguous object with the buffer protocol."""

_NO_LABELS: Mapping[str, str] = MappingProxyType({})


class PoolKey(NamedTuple):
    """A key of a pool, as handed out by pop_fifo/pop_spread or listed by snapshot.

    namespace: the key's namespace ("" if none).
    name: the key's name.
    node: the node it is scheduled on ("" = not scheduled).
    ready: whether it was ready when handed out (or, in a snapshot, is ready).
    seq: its age in the pool; smaller is older. Unique within a pool.
    token: pass the key to Engine.put_back to return it at its age; 0 for keys
        from snapshot(), which are not hand-outs.
    """

    namespace: str
    name: str
    node: str = ""
    ready: bool = True
    seq: int = 0
    token: int = 0


class PoolStats(NamedTuple):
    """Counters of one pool, read atomically (berth_pool_stats)."""

    keys: int
    """Keys in the pool."""
    ready_keys: int
    """Of those, ready."""
    scheduled_keys: int
    """Of those, with a node."""
    nodes: int
    """Distinct nodes holding at least one key."""
    put_back_records: int
    """Hand-outs still eligible for put_back."""


class NodeStat(NamedTuple):
    """Keys of one pool on one node (berth_pool_node_stats)."""

    node: str
    keys: int
    """Keys on this node, ready or not."""
    ready_keys: int
    """Of those, ready."""


class EventType(enum.IntEnum):
    """The type of a watch event (berth.fb.EventType). Cache.apply also takes
    the plain ints and the watch API's strings "ADDED", "MODIFIED", "DELETED"."""

    ADDED = 0
    MODIFIED = 1
    DELETED = 2


class Event(NamedTuple):
    """One watch event, or one of the caller's own writes, for Cache.apply.

    ADDED and MODIFIED upsert the object; DELETED deletes it and uses only
    namespace, name and resource_version (0 = whatever version is cached).
    """

    type: EventType | int | str
    namespace: str
    name: str
    resource_version: int
    labels: Mapping[str, str] = _NO_LABELS
    payload: BytesLike = b""


class Object(NamedTuple):
    """One object for Cache.replace (a relist). Any object with the attributes
    namespace, name, resource_version (and optionally labels and payload) works
    as well, including the ObjectView items of an ObjectList."""

    namespace: str
    name: str
    resource_version: int
    labels: Mapping[str, str] = _NO_LABELS
    payload: BytesLike = b""


class CacheStats(NamedTuple):
    """Counters of a cache, read atomically (berth_cache_stats)."""

    objects: int
    """Objects held."""
    tombstones: int
    """Deletes remembered, so that an older add cannot bring an object back."""
    resource_version: int
    """Largest resourceVersion applied so far."""
    applied: int
    """Upserts and deletes that changed the cache."""
    ignored: int
    """Stale events the version guard dropped."""
    synced: bool
    """True after the first Cache.replace."""


class Refusal(enum.IntEnum):
    """Why Limiter.try_acquire_reason did not grant (BERTH_LIMIT_*)."""

    GRANTED = 0
    """Not a refusal: the permits were taken."""
    AT_CAPACITY = 1
    """in_use + n would exceed the capacity."""
    WAITERS_QUEUED = 2
    """Others wait first: nobody barges past a waiter (FIFO)."""


class LimiterStats(NamedTuple):
    """Counters of a limiter, read atomically (berth_limiter_stats)."""

    capacity: int
    in_use: int
    """Permits held (granted and not released)."""
    waiting: int
    """Waiters queued (threads and tasks)."""
    waiting_permits: int
    """Permits they ask for."""
    granted: int
    """Acquisitions that succeeded."""
    rejected: int
    """try_acquire refusals."""
    timed_out: int
    """Blocking waits that reached their deadline."""
    cancelled: int
    """Asynchronous waits cancelled."""


class SharedLimiterStats(NamedTuple):
    """Counters of a shared limiter, for every process using it, read
    atomically after reclaiming the permits of dead processes
    (berth_shared_limiter_stats)."""

    capacity: int
    in_use: int
    """Permits held, by every process."""
    waiting: int
    """Waits queued in the region. A blocking thread (a thread in another
    binding's berth_shared_limiter_acquire) counts one; the asynchronous waits
    of one handle (asyncio tasks, and acquire_blocking / hold() threads in
    this binding) count one together while any is queued."""
    holders: int
    """Processes holding permits."""
    granted: int
    """Acquisitions that succeeded (including grants to waits cancelled
    afterwards, whose permits went back)."""
    rejected: int
    """Refusals of an immediate acquisition: try_acquire's, and those of
    every wait that had to queue."""
    timed_out: int
    """Waits through berth_shared_limiter_acquire that reached their deadline
    (here: only acquire_blocking(n, timeout=0)); the binding's other waits
    time out by cancelling, which is not counted."""
    reclaimed: int
    """Permits taken back from processes that died holding them."""


class BucketStats(NamedTuple):
    """A token bucket's settings and tokens at one time (berth_bucket_stats)."""

    rate: float
    """Tokens per second (math.inf: no limit)."""
    burst: int
    tokens: float
    """Tokens at that time; negative while reservations are in debt."""


class Reservation:
    """Tokens taken by Bucket.reserve, and when the caller may act on them.

    time_to_act_ns: when the caller may act, on berth.clock_now_ns()'s clock.
    delay_ns: how long to wait from the reservation on (>= 0); delay is the
        same in seconds.
    tokens: the tokens taken.
    rate: the bucket's rate when reserved (cancel() uses it).

    cancel() gives back the tokens nobody reserved after this reservation; it
    does nothing once the time to act has passed, and nothing the second time.
    """

    __slots__ = ("_bucket", "time_to_act_ns", "delay_ns", "tokens", "rate", "_cancelled")

    def __init__(self, bucket: Bucket, time_to_act_ns: int, delay_ns: int, tokens: int, rate: float) -> None:
        self._bucket = bucket
        self.time_to_act_ns = time_to_act_ns
        self.delay_ns = delay_ns
        self.tokens = tokens
        self.rate = rate
        self._cancelled = False

    @property
    def delay(self) -> float:
        """How long to wait before acting, in seconds (>= 0)."""
        return self.delay_ns / 1e9

    @property
    def cancelled(self) -> bool:
        """True once cancel() has run."""
        return self._cancelled

    def cancel(self, now_ns: int | None = None) -> None:
        """Gives back the tokens nobody reserved after this reservation
        (berth_bucket_cancel); a no-op once its time to act has passed (as of
        now_ns, None = now), and on every call after the first (Berth itself
        would give the tokens back twice). Raises ClosedError if the bucket
        was closed."""
        if self._cancelled:
            return
        self._cancelled = True
        self._bucket._cancel_reservation(self.time_to_act_ns, self.tokens, self.rate, now_ns)

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return f"<berth.Reservation tokens={self.tokens} delay={self.delay:.6f}s{state}>"
