"""Type stubs of berth._berth, the native module over Berth's C ABI (berth.h).

Every Engine and Cache method may raise:
    ClosedError: the engine (cache, selector) was closed.
    TypeError: an argument has the wrong type (names must be str, flags bool).
    InvalidNameError: a name is empty where it must not be, longer than its
        limit (in UTF-8 bytes: pool 1..MAX_POOL_LEN, namespace
        0..MAX_NAMESPACE_LEN, name 1..MAX_NAME_LEN, node 0..MAX_NODE_LEN),
        contains NUL, or cannot be encoded as UTF-8 (lone surrogates).
    OutOfMemoryError, InternalError: failures inside Berth.
A failed call changes nothing. Every method releases the GIL while Berth
works, and an Engine, a Cache or a Selector may be used from many threads at
once.
"""

import sys
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Literal, Protocol, SupportsIndex, final, overload

from ._limit import _Acquire, _Hold, _SharedAcquire, _SharedHold
from ._types import (
    BucketStats,
    BytesLike,
    CacheStats,
    Event,
    EventType,
    LimiterStats,
    NodeStat,
    Object,
    PoolKey,
    PoolStats,
    Refusal,
    Reservation,
    SharedLimiterStats,
)

ABI_VERSION: int
"""BERTH_ABI_VERSION of the berth.h this module was compiled against."""
MAX_POOL_LEN: int
MAX_NAMESPACE_LEN: int
MAX_NAME_LEN: int
MAX_NODE_LEN: int
POOL_PUT_BACK_WINDOW: int
"""How many later hand-outs a hand-out stays eligible for put_back."""
MAX_PAYLOAD_LEN: int
"""Largest payload of a cached object, in bytes (64 MiB)."""
MAX_LABELS: int
"""Most labels a cached object may carry."""
_STATUS_NAMES: dict[int, str]

def clock_now_ns() -> int:
    """Berth's monotonic clock (CLOCK_MONOTONIC, the clock of time.monotonic and
    of asyncio loops), in nanoseconds (berth_clock_now_ns). The clock of every
    now_ns argument and of Reservation.time_to_act_ns."""

def abi_version() -> int:
    """BERTH_ABI_VERSION of the loaded libberth (MAJOR*10000 + MINOR*100 + PATCH).

    At import the binding checks that its major equals ABI_VERSION's and that
    the library is not older than ABI_VERSION."""

def _object_list_bytes(
    objects: Iterable[Object | _ObjectTuple | ObjectView | _ObjectLike], resource_version: int
) -> bytes:
    """The berth.fb.ObjectList bytes Cache.replace(objects, resource_version)
    passes to berth_cache_replace (for benchmarks and tests)."""

class _KeyLike(Protocol):
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def node(self) -> str: ...
    @property
    def ready(self) -> bool: ...

@final
class Engine:
    """A Berth engine (berth_engine): owns pools of keys; engines share nothing.

    Use it as a context manager or call close(). Safe to share between threads.
    """

    def __init__(self) -> None:
        """Creates an engine (berth_engine_new). Raises OutOfMemoryError."""
    def close(self) -> None:
        """Frees the engine and everything it owns (berth_engine_free).

        Idempotent. From the moment close() starts, every method raises
        ClosedError; calls already in flight in other threads are waited for
        (they are short: no call blocks), and only then is the engine freed."""
    @property
    def closed(self) -> bool:
        """True once close() has run."""
    def __enter__(self) -> Engine: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        """Closes the engine; never suppresses the exception."""
    def add(
        self, pool: str, namespace: str, name: str, node: str = "", ready: bool = True
    ) -> bool:
        """Adds a key to a pool, creating the pool if needed (berth_pool_add).

        If (namespace, name) is new it enters as the youngest key and True is
        returned. If it is present its node and ready flag are updated in place,
        it keeps its age, and False is returned. Adding a key makes any
        outstanding put_back of it stale. node "" means not yet scheduled.
        O(log M + log K)."""
    def update(
        self, pool: str, namespace: str, name: str, node: str = "", ready: bool = True
    ) -> bool:
        """Updates the node and ready flag of (namespace, name) only if the key
        is in the pool, keeping its age (berth_pool_update). True if it was
        there. Never inserts: use it for readiness or scheduling changes of a
        sandbox that may have been claimed meanwhile, so that a claimed key
        cannot come back (add() would insert it again). An absent key or pool
        is not an error (False). Raises as add()."""
    def add_batch(self, pool: str, keys: Iterable[tuple[str, str, str, bool] | PoolKey | _KeyLike]) -> int:
        """Adds many keys in one call (berth_pool_add_batch), in order, with the
        semantics of add(); a key named twice ends with its last values.

        Each item is a PoolKey (seq and token are ignored), a (namespace, name,
        node, ready) tuple or list, or an object with those four attributes.
        All or nothing: if any key is bad (InvalidNameError, naming its index,
        or TypeError) the pool is left unchanged. Returns how many keys were
        new. Raises BadBufferError if the batch exceeds BERTH_MAX_BUFFER_LEN
        bytes."""
    def remove(self, pool: str, namespace: str, name: str) -> bool:
        """Removes (namespace, name) from a pool (berth_pool_remove).

        Returns True if a key was removed; an absent key or pool is not an
        error (False)."""
    def remove_pool(self, pool: str) -> bool:
        """Drops a pool and everything it held, including its put_back
        records (berth_pool_remove_pool). True if the pool existed."""
    def pools(self) -> list[str]:
        """The names of the engine's pools, sorted (berth_engine_list_pools).
        A pool exists from its first add until remove_pool, also while
        empty. O(pools)."""
    def pop_fifo(self, pool: str) -> PoolKey | None:
        """Hands out the oldest key, ready or not, and removes it
        (berth_pool_pop_fifo). None if the pool is empty.
        Raises NotFoundError if the pool does not exist. O(log M + log K)."""
    def pop_spread(self, pool: str) -> PoolKey | None:
        """Hands out a key by the NodeSpread rule and removes it
        (berth_pool_pop_spread). None if the pool is empty.

        1. Ready keys win over unready ones: the rule is applied to the ready
           keys, or to the unready keys if there is no ready key.
        2. Among the candidates that are scheduled, pick the node holding the
           most keys of the pool (counting all its keys, ready or not); a tie
           goes to the node whose oldest candidate is oldest. Hand out that
           node's oldest candidate.
        3. If no candidate is scheduled, hand out the oldest candidate.
        Raises NotFoundError if the pool does not exist. O(log M + log K)."""
    def put_back(self, pool: str, key: PoolKey) -> bool:
        """Returns a handed-out key to the pool at its original age, with the
        node and ready flag it had when handed out (berth_pool_put_back).

        Returns False (and changes nothing) if the put_back is stale: the key
        was added again after the hand-out (the newer add wins), it was already
        put back, the token does not belong to this key (e.g. a key from
        snapshot(), token 0), or the hand-out is older than
        POOL_PUT_BACK_WINDOW later hand-outs.
        Raises NotFoundError if the pool does not exist (e.g. was removed),
        InvalidArgumentError if key.token is not a uint64."""
    def stats(self, pool: str) -> PoolStats:
        """Counters of a pool, read atomically (berth_pool_get_stats). O(1).
        Raises NotFoundError if the pool does not exist."""
    def snapshot(self, pool: str) -> list[PoolKey]:
        """Every key of a pool, oldest first, taken atomically
        (berth_pool_snapshot). The keys' token is 0: they are not hand-outs.
        O(N). Raises NotFoundError if the pool does not exist."""
    def node_stats(self, pool: str) -> dict[str, NodeStat]:
        """Per node holding keys of the pool: its key and ready-key counts,
        in node-name order (berth_pool_node_stats). Unscheduled keys are not
        listed (see stats()). Raises NotFoundError if the pool does not exist."""

# ---------------------------------------------------------------------------
# Label selectors
# ---------------------------------------------------------------------------

@final
class Selector:
    """A parsed Kubernetes label selector (berth_selector): the full grammar of
    k8s.io/apimachinery's labels.Parse, with keys and values validated as
    Kubernetes validates them. Immutable; safe to share between threads.

    Parse once and reuse it for many Cache.list and matches() calls. Freed by
    close(), the context manager, or when collected.
    """

    def __init__(self, text: str) -> None:
        """Parses a selector (berth_selector_parse). "" matches everything.

        Raises BadSelectorError for a selector Kubernetes would reject; the
        message names the byte offset and what was expected ("at byte 7:
        found ')', expected: identifier"). TypeError if text is not a str."""
    def close(self) -> None:
        """Frees the selector (berth_selector_free). Idempotent. From the
        moment close() starts every method (and Cache.list with this
        selector) raises ClosedError; calls already in flight in other
        threads are waited for first."""
    @property
    def closed(self) -> bool:
        """True once close() has run."""
    def __enter__(self) -> Selector: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        """Closes the selector; never suppresses the exception."""
    def matches(self, labels: Mapping[str, str]) -> bool:
        """True if the labels satisfy every requirement (berth_selector_matches).

        Labels are not validated: any str compares as Kubernetes would compare
        it. TypeError if labels is not a mapping of str to str."""
    def __str__(self) -> str:
        """The canonical form Kubernetes prints (berth_selector_string):
        requirements sorted by key, values sorted. Selector(str(s)) is equal
        to s. Raises ClosedError after close()."""
    def __eq__(self, other: object) -> bool:
        """Equal when the canonical forms are equal ("b=2,a=1" == "a=1,b=2").
        A closed selector compares by the form it had if str(), == or hash()
        computed it before close(), else equals only itself."""
    def __hash__(self) -> int:
        """The hash of the canonical form, so equal selectors hash alike (and
        selectors can key dicts). ClosedError for a closed selector whose
        form was never computed."""

# ---------------------------------------------------------------------------
# Object cache
# ---------------------------------------------------------------------------

class _Stop(Protocol):
    """What Cache._replace_stoppable polls (a threading.Event)."""

    def is_set(self) -> bool: ...

class _ObjectLike(Protocol):
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def resource_version(self) -> int: ...

_EventTuple = (
    tuple[EventType | int | str, str, str, int]
    | tuple[EventType | int | str, str, str, int, Mapping[str, str] | None]
    | tuple[EventType | int | str, str, str, int, Mapping[str, str] | None, BytesLike | ObjectView | None]
)
_ObjectTuple = (
    tuple[str, str, int]
    | tuple[str, str, int, Mapping[str, str] | None]
    | tuple[str, str, int, Mapping[str, str] | None, BytesLike | ObjectView | None]
)

@final
class ObjectView:
    """One object of the cache: a reference to its immutable object (C ABI
    berth_object), unchanged by later writes to the cache and valid after
    the cache is closed. Fields are decoded each time they are read; nothing
    is copied up front. It also exports its payload through the buffer
    protocol, read-only and without a copy (memoryview(view)).
    Not constructible from Python.
    """

    @property
    def namespace(self) -> str:
        """The object's namespace ("" if none)."""
    @property
    def name(self) -> str:
        """The object's name."""
    @property
    def resource_version(self) -> int:
        """The object's resourceVersion."""
    @property
    def labels(self) -> dict[str, str]:
        """The object's labels, as a new dict on every read."""
    @property
    def payload(self) -> bytes:
        """The object's payload as bytes: a copy on every read, which
        json.loads and orjson.loads take. memoryview(view) gives it without a
        copy."""
    if sys.version_info >= (3, 12):
        def __buffer__(self, flags: int, /) -> memoryview: ...

@final
class ObjectList:
    """The objects returned by Cache.list: a read-only sequence of ObjectView,
    sorted by (namespace, name), each a reference to an immutable object of
    the cache (C ABI berth_object_list): nothing is copied, whatever the
    payload sizes, and nothing is decoded until it is read. The references
    are dropped when the list and every view taken from it are gone.
    Not constructible from Python.
    """

    @property
    def resource_version(self) -> int:
        """The cache's resourceVersion when the list was taken."""
    def __len__(self) -> int: ...
    @overload
    def __getitem__(self, index: SupportsIndex, /) -> ObjectView: ...
    @overload
    def __getitem__(self, index: slice, /) -> list[ObjectView]: ...
    def __iter__(self) -> Iterator[ObjectView]: ...

@final
class Cache:
    """An object cache (berth_cache): watch-fed, write-through,
    version-guarded, indexed by namespace and labels.

    Objects are keyed by (namespace, name) and carry labels, a
    resourceVersion (the decimal integer Kubernetes issues; larger is newer)
    and an opaque payload (bytes whose format the caller owns, e.g. JSON).
    Watch events (apply) and the caller's own writes (upsert/delete, after
    the API server accepted them, with the resourceVersion it returned) go
    through the same version guard:

    - an upsert older than or equal to what the cache holds is ignored;
    - a delete leaves a tombstone with its resourceVersion, so an older add
      cannot bring the object back (tombstones are bounded in count, oldest
      forgotten first);
    - a delete with resource_version 0 deletes whatever version is cached.

    replace() swaps in a full relist and marks the cache synced; before the
    first replace, list() and get() raise NotSyncedError so that the caller
    reads from the API server on purpose.

    Use it as a context manager or call close(). Safe to share between
    threads: readers never wait for each other.
    """

    def __init__(self, tombstone_limit: int = 0) -> None:
        """Creates an empty, unsynced cache (berth_cache_new).

        tombstone_limit: how many tombstones are kept (0 = the default,
        100000). InvalidArgumentError if it is not in [0, 2**32)."""
    def close(self) -> None:
        """Frees the cache and everything in it (berth_cache_free).

        Idempotent. From the moment close() starts, every method raises
        ClosedError; calls already in flight in other threads are waited for
        first. ObjectLists already returned stay valid."""
    @property
    def closed(self) -> bool:
        """True once close() has run."""
    def __enter__(self) -> Cache: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        """Closes the cache; never suppresses the exception."""
    def upsert(
        self,
        namespace: str,
        name: str,
        resource_version: int,
        labels: Mapping[str, str] | None = {},
        payload: BytesLike | ObjectView | None = b"",
    ) -> bool:
        """Inserts or replaces (namespace, name) (berth_cache_upsert), unless
        the cache holds it, or a tombstone of it, at a resourceVersion >=
        resource_version. True if the cache changed, False if the version
        guard ignored it.

        The payload is passed to Berth without a copy (buffer protocol) and
        copied once inside it; None means no labels / no payload.
        Raises InvalidArgumentError (resource_version 0 or out of uint64
        range, more than MAX_LABELS labels, payload over MAX_PAYLOAD_LEN),
        InvalidNameError (namespace 0..MAX_NAMESPACE_LEN bytes, name
        1..MAX_NAME_LEN, label keys and values as Kubernetes validates them),
        TypeError (labels not a mapping of str to str, payload not
        bytes-like)."""
    def delete(self, namespace: str, name: str, resource_version: int = 0) -> bool:
        """Deletes (namespace, name) as of resource_version (0 = whatever
        version is cached) and leaves a tombstone (berth_cache_delete).

        False (ignored) if the cache holds the object at a newer
        resourceVersion, or a tombstone at least as new. Deleting an absent
        object still records the tombstone. Raises as upsert()."""
    def apply(self, events: Iterable[Event | _EventTuple] | Event) -> int:
        """Applies watch events in order, in one call (berth_cache_apply over a
        berth.fb.EventBatch built in C++): ADDED and MODIFIED as upsert(),
        DELETED as delete() (using only namespace, name, resource_version).

        Each event is an Event or a (type, namespace, name, resource_version[,
        labels[, payload]]) tuple; type is an EventType, 0/1/2, or the watch
        API's "ADDED"/"MODIFIED"/"DELETED". A single Event may be passed
        directly. All or nothing: if any event is bad (the message names its
        index) the cache is unchanged. Returns how many events changed the
        cache. Raises as upsert(), plus InvalidArgumentError for an unknown
        type and BadBufferError if the batch exceeds BERTH_MAX_BUFFER_LEN."""
    def replace(self, objects: Iterable[Object | _ObjectTuple | ObjectView | _ObjectLike], resource_version: int) -> None:
        """Replaces the contents with a full relist taken at resource_version
        (berth_cache_replace over a berth.fb.ObjectList built in C++), like
        client-go's Replace: cached objects and tombstones newer than the
        list are kept, everything else comes from the list. Then the cache is
        synced.

        Each object is an Object, a (namespace, name, resource_version[,
        labels[, payload]]) tuple, an ObjectView (copied from its bytes), or
        any object with namespace, name, resource_version (and optionally
        labels, payload) attributes. All or nothing. Raises as apply().

        The GIL is given up between chunks of objects while the list is
        built (other threads run meanwhile), and throughout Berth's part.
        The iterable must not be changed by another thread meanwhile (that
        is the caller's race: the objects read are then whatever its
        iterator yields)."""
    async def replace_async(
        self, objects: Iterable[Object | _ObjectTuple | ObjectView | _ObjectLike], resource_version: int
    ) -> None:
        """replace() in a worker thread (the loop's default executor, as
        asyncio.to_thread), without blocking the event loop. Raises as
        replace().

        Cancelled, the task stops the build and waits for the worker thread
        to return before CancelledError propagates: the cache is then
        either unchanged (the objects had not all been read) or fully
        replaced (Berth was already swapping them in, which is not
        interrupted), never half of it, and nothing of the call runs
        afterwards."""
    def _replace_stoppable(
        self,
        objects: Iterable[Object | _ObjectTuple | ObjectView | _ObjectLike],
        resource_version: int,
        stop: _Stop,
    ) -> bool:
        """replace(), polling stop.is_set() between chunks of objects while
        building the list; False, the cache unchanged, if it stopped. The
        primitive of replace_async."""
    def list(self, namespace: str = "", selector: Selector | str | None = None) -> ObjectList:
        """The objects of namespace ("" = every namespace) that match selector
        (None = every object), sorted by (namespace, name), with the cache's
        resourceVersion, taken atomically (berth_cache_list_objects).

        A str selector is parsed for this call only (parse a Selector once
        to reuse it). Costs about the smallest posting list the selector
        allows plus the result, not the cache size. Returns a lazy
        ObjectList of references: nothing copied, nothing decoded until
        read. Releases the GIL while listing.
        Raises NotSyncedError before the first replace(), BadSelectorError,
        InvalidNameError, ClosedError (the cache or the selector is closed)."""
    def get(self, namespace: str, name: str) -> ObjectView | None:
        """One object (berth_cache_get_object), or None if the cache does not
        hold it: a reference, valid and unchanged whatever the cache does
        afterwards. O(1); releases the GIL (behind a queued writer it can
        wait for a relist's merge). Raises NotSyncedError before the first
        replace(), InvalidNameError."""
    def stats(self) -> CacheStats:
        """Counters of the cache, read atomically (berth_cache_get_stats).
        O(1); works before the first sync."""
    def __len__(self) -> int:
        """The number of objects cached (CacheStats.objects). O(1); works
        before the first sync (0)."""
    def __contains__(self, key: object) -> bool:
        """(namespace, name) in cache: whether get() would find it. O(1).
        TypeError unless key is a (str, str) tuple; NotSyncedError before
        the first replace(), InvalidNameError, ClosedError as get()."""

# ---------------------------------------------------------------------------
# Concurrency limiter and token bucket
# ---------------------------------------------------------------------------

@final
class Limiter:
    """A concurrency limiter (berth_limiter): weighted permits under a capacity
    that can change at run time.

    Waiters are served first come, first served, and nobody barges past a
    waiter: a large request at the head is not starved by small ones behind it
    (while anyone waits, try_acquire refuses with Refusal.WAITERS_QUEUED).
    Lowering the capacity never revokes held permits: new grants wait until
    in-use drops below it, and a waiter asking for more than a lowered
    capacity waits until it is raised again. Asking for more than the current
    capacity (or n < 1) raises InvalidArgumentError.

    Three ways to wait:
      - try_acquire(n): never waits;
      - `async with limiter.acquire(n):` (or `async with limiter:` for n=1):
        asyncio; never blocks the event loop. Granted at once, it does not
        even yield; otherwise the task waits on a future resolved through a
        berth notifier watched by the running loop. Cancelling the task (or
        asyncio.timeout / wait_for) at any point leaves it holding nothing;
      - `with limiter.hold(n):` or acquire_blocking(n, timeout): threads;
        blocks the calling thread with the GIL released.

    Safe to share between threads and event loops. There is deliberately no
    synchronous `with limiter:` (it would block an event loop if written in a
    coroutine by mistake): use hold(). Freed by close() or when collected.
    """

    def __init__(self, capacity: int) -> None:
        """Creates a limiter (berth_limiter_new). InvalidArgumentError if
        capacity < 1 or not an int64; TypeError if it is not an int."""
    def close(self) -> None:
        """Frees the limiter (berth_limiter_free). Idempotent.

        From the moment close() starts every method raises ClosedError. Every
        waiter is woken: threads in acquire_blocking / hold and tasks in
        `async with limiter.acquire()` raise ClosedError and hold nothing.
        Permits held when it closed are forgotten: leaving a hold() or
        acquire() block afterwards is a no-op (release() raises ClosedError)."""
    @property
    def closed(self) -> bool:
        """True once close() has run."""
    @property
    def capacity(self) -> int:
        """The capacity; setting it is set_capacity()."""
    @capacity.setter
    def capacity(self, value: int) -> None:
        """set_capacity(value)."""
    def try_acquire(self, n: int = 1) -> bool:
        """Takes n permits if they are free and nobody waits
        (berth_limiter_try_acquire); never waits. True if taken (release them
        later), False if refused (see try_acquire_reason).
        InvalidArgumentError if n < 1 or n > capacity."""
    def try_acquire_reason(self, n: int = 1) -> Refusal:
        """As try_acquire(n), returning why it refused: Refusal.GRANTED (the
        permits were taken), AT_CAPACITY or WAITERS_QUEUED."""
    def acquire_blocking(self, n: int = 1, timeout: float | None = None) -> None:
        """Blocks this thread until n permits are granted, in FIFO order
        (GIL released).

        timeout: seconds (None or math.inf: no deadline; 0: only if free now).
        Raises TimeoutError (berth.TimeoutError, also the builtin) when the
        deadline passes, holding nothing; InvalidArgumentError if n < 1, n >
        capacity, or timeout < 0; ClosedError if close() ran meanwhile;
        RuntimeError if this thread runs an asyncio event loop (unless
        timeout is 0). A signal handler that raises (KeyboardInterrupt) ends
        the wait, holding nothing.

        It waits through the asynchronous form (so that signals can interrupt
        it): its timeouts count in LimiterStats.cancelled, not timed_out
        (timeout=0 uses berth_limiter_acquire, which counts timed_out)."""
    def release(self, n: int = 1) -> None:
        """Returns n permits and grants the waiters that now fit, in order
        (berth_limiter_release). InvalidArgumentError if n < 1 or more
        permits than are in use (nothing changes)."""
    def set_capacity(self, capacity: int) -> None:
        """Changes the capacity (>= 1) at run time (berth_limiter_set_capacity).
        Raising it grants the waiters that now fit; lowering it revokes
        nothing."""
    def stats(self) -> LimiterStats:
        """Counters of the limiter (berth_limiter_get_stats)."""
    def acquire(self, n: int = 1) -> _Acquire:
        """An async context manager holding n permits for its block:
        `async with limiter.acquire(n): ...`. See the class docstring.
        Raises as try_acquire() on entry, and ClosedError if the limiter is
        closed while the task waits."""
    def hold(self, n: int = 1, timeout: float | None = None) -> _Hold:
        """A context manager holding n permits for its block (blocking, for
        threads): `with limiter.hold(n, timeout): ...`. Waits as
        acquire_blocking(n, timeout) and releases on exit."""
    async def __aenter__(self) -> None:
        """`async with limiter:` is `async with limiter.acquire(1):`."""
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Releases the permit; never suppresses the exception."""
    # Internal: the primitives of the asyncio support (berth/_limit.py).
    def _acquire_async(self, n: int, notifier: _Notifier, token: int) -> int | None:
        """berth_limiter_acquire_async: None if granted now, else the ticket
        whose grant posts token to notifier."""
    def _claim(self, ticket: int) -> bool:
        """berth_limiter_claim: True if the caller now holds the ticket's permits."""
    def _cancel(self, ticket: int) -> int:
        """berth_limiter_cancel: 0 unknown, 1 was waiting, 2 was granted (its
        permits went back)."""
    def _release_held(self, n: int = 1) -> None:
        """release() for a context manager's exit: a no-op once closed."""

@final
class SharedLimiter:
    """A concurrency limiter in named POSIX shared memory
    (berth_shared_limiter, region /dev/shm/berth.<name>): one capacity for
    every process of the host that opens the same name, e.g. the worker
    processes of a server, whichever worker takes a request.

    The semantics of Limiter (weighted permits, FIFO waiters across processes,
    nobody barges past a waiter, run-time capacity) with these differences:

      - Permits belong to the process, not the handle: a process releases
        what it acquired, through any of its handles. A process that dies
        holding permits (crash, SIGKILL) gets them reclaimed when another
        process looks (a wait that does not fit, every stats(), and every
        50 ms while anyone waits).
      - fork: a handle inherited by a forked child works there as a handle
        of a new process: none of the parent's permits, blocks or waits
        come with it, and its waits are served in the child.
      - close() closes this handle only: other processes, and other handles
        of this process, keep going. The name stays until unlink(name).
      - Limits of the region: 128 processes holding permits and 256 waits
        queued at once, across all processes.

    Three ways to wait, as for Limiter: try_acquire(n) (never waits);
    `async with limiter.acquire(n):` (asyncio; never blocks the event loop);
    `with limiter.hold(n, timeout):` / acquire_blocking(n, timeout) (threads;
    GIL released; interrupted by close() and by signals such as Ctrl-C).
    Cancelling a task or a timeout at any point leaves it holding nothing.
    Safe to share between threads and event loops of one process.
    """

    def __init__(self, name: str, capacity: int | None = None) -> None:
        """Opens the shared limiter `name` (berth_shared_limiter_open).

        name: 1 to 200 bytes of [A-Za-z0-9._-] (InvalidNameError otherwise).
        capacity: an int >= 1 creates the limiter with that capacity if it
            does not exist (an existing one keeps its own capacity: set it
            with set_capacity); None only opens an existing one
            (NotFoundError if there is none).
        Raises BadRegionError if a region exists under the name but is not a
        Berth shared limiter of this layout (nothing is changed in it);
        InvalidArgumentError if capacity < 1; InternalError if the OS refused
        (the message says why)."""
    @staticmethod
    def unlink(name: str) -> None:
        """Removes the name (berth_shared_limiter_unlink); processes that have
        it open keep using the region, and a later open with a capacity
        creates a new one. NotFoundError if there is no such name;
        InvalidNameError for a bad name."""
    def close(self) -> None:
        """Closes this handle (berth_shared_limiter_close). Idempotent.

        From the moment close() starts every method raises ClosedError. Waits
        on this handle are woken: threads in acquire_blocking / hold and
        tasks in `async with limiter.acquire()` raise ClosedError, holding
        nothing. Permits held by this handle's hold() and acquire() blocks
        are given back (leaving such a block afterwards is a no-op); permits
        this process took with try_acquire / acquire_blocking stay held while
        the process has another handle on the region open; closing its last
        one gives them back."""
    @property
    def closed(self) -> bool:
        """True once close() has run."""
    @property
    def name(self) -> str:
        """The name it was opened with."""
    @property
    def capacity(self) -> int:
        """The capacity, for every process; setting it is set_capacity()."""
    @capacity.setter
    def capacity(self, value: int) -> None:
        """set_capacity(value)."""
    def try_acquire(self, n: int = 1) -> bool:
        """Takes n permits for this process if they are free and nobody waits
        in any process (berth_shared_limiter_try_acquire); never waits. True
        if taken (release them later), False if refused.
        InvalidArgumentError if n < 1 or n > capacity."""
    def try_acquire_reason(self, n: int = 1) -> Refusal:
        """As try_acquire(n), returning why it refused: Refusal.GRANTED (the
        permits were taken), AT_CAPACITY or WAITERS_QUEUED."""
    def acquire_blocking(self, n: int = 1, timeout: float | None = None) -> None:
        """Blocks this thread until n permits are granted to this process, in
        FIFO order across processes (GIL released).

        timeout: seconds (None or math.inf: no deadline; 0: only if free now).
        Raises TimeoutError (berth.TimeoutError, also the builtin) when the
        deadline passes, holding nothing; InvalidArgumentError if n < 1, n >
        capacity, or timeout < 0; ClosedError if close() ran meanwhile;
        RuntimeError if this thread runs an asyncio event loop (unless
        timeout is 0). A signal handler that raises (KeyboardInterrupt) ends
        the wait, holding nothing.

        It waits through the asynchronous form (so that close() and signals
        can interrupt it): its timeouts are not counted in
        SharedLimiterStats.timed_out, and its wait shows in
        SharedLimiterStats.waiting as part of the handle's one queued wait."""
    def release(self, n: int = 1) -> None:
        """Returns n permits this process holds and lets the waiters that now
        fit in, in order (berth_shared_limiter_release). InvalidArgumentError
        if n < 1 or more than this process holds (nothing changes)."""
    def set_capacity(self, capacity: int) -> None:
        """Changes the capacity (>= 1) for every process
        (berth_shared_limiter_set_capacity). Raising it lets waiters in;
        lowering it revokes nothing."""
    def stats(self) -> SharedLimiterStats:
        """Counters of the shared limiter across every process
        (berth_shared_limiter_get_stats), read after reclaiming the permits
        of processes that died."""
    def acquire(self, n: int = 1) -> _SharedAcquire:
        """An async context manager holding n permits for its block:
        `async with limiter.acquire(n): ...`. Granted at once, it does not
        even yield; otherwise the task waits on a future resolved through the
        running loop's berth notifier. Raises as try_acquire() on entry,
        and ClosedError if the handle is closed while the task waits."""
    def hold(self, n: int = 1, timeout: float | None = None) -> _SharedHold:
        """A context manager holding n permits for its block (blocking, for
        threads): `with limiter.hold(n, timeout): ...`. Waits as
        acquire_blocking(n, timeout) and releases on exit."""
    async def __aenter__(self) -> None:
        """`async with limiter:` is `async with limiter.acquire(1):`."""
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Releases the permit; never suppresses the exception."""
    # Internal: the primitives of the asyncio and block support (berth/_limit.py).
    @property
    def _waits(self) -> dict[int, object]:
        """ticket -> future of the asyncio waits queued on this handle;
        close() wakes them."""
    def _acquire_async(self, n: int, notifier: _Notifier, token: int) -> int | None:
        """berth_shared_limiter_acquire_async for an acquire() block: None if
        granted now (counted for the block), else the ticket whose grant
        posts token to notifier."""
    def _claim(self, ticket: int) -> bool:
        """berth_shared_limiter_claim: True if this process now holds the
        ticket's permits (counted for the block)."""
    def _cancel(self, ticket: int) -> int:
        """berth_shared_limiter_cancel: 0 unknown, 1 was waiting, 2 was
        granted (its permits went back)."""
    def _acquire_held(self, n: int = 1, timeout: float | None = None) -> None:
        """hold()'s entry: acquire_blocking(n, timeout), counted for the
        block."""
    def _release_held(self, n: int = 1) -> None:
        """release() for a block's exit: a no-op once closed (close() gave
        the block's permits back)."""

@final
class _Notifier:
    """A berth_notifier: an eventfd (non-blocking, close-on-exec) plus a queue
    of completed tokens. One per event loop, made by berth/_limit.py."""

    def __init__(self) -> None: ...
    def close(self) -> None:
        """Frees this reference (berth_notifier_free); limiters with tickets
        that post to it keep the notifier alive until they are done."""
    @property
    def closed(self) -> bool:
        """True once close() has run."""
    @property
    def fd(self) -> int:
        """The fd to watch for readability; owned by the notifier (do not
        close or read it)."""
    def drain(self) -> list[int]:
        """Every completed token, oldest first (berth_notifier_drain, in
        batches); clears the fd's readiness."""

@final
class Bucket:
    """A token-bucket rate limiter (berth_bucket) with the semantics of
    golang.org/x/time/rate.

    Tokens refill continuously at `rate` per second up to `burst`; the
    bucket starts full. allow(n) takes n tokens now or refuses; reserve(n)
    takes them now, even into debt, and says how long the caller must wait
    before acting (Berth never sleeps; wait() and wait_blocking() do);
    cancelling a reservation before its time gives back the tokens nobody
    reserved after it. Rate and burst change at run time, keeping the tokens
    accrued (a lower burst caps them at once).

    Every method takes an optional now_ns, a time on clock_now_ns()'s clock
    (None: now); explicit times make the behaviour exact, for tests. Safe to
    share between threads. Use as a context manager or call close().
    """

    def __init__(self, rate: float, burst: int) -> None:
        """Creates a full bucket (berth_bucket_new). rate: tokens per second,
        > 0 (math.inf: no limit) and fast enough for one token within
        2**63 - 1 ns (~292 years, rate > ~1.08e-10); burst >= 1.
        InvalidArgumentError otherwise."""
    def close(self) -> None:
        """Frees the bucket (berth_bucket_free). Idempotent; afterwards every
        method raises ClosedError (Reservation.cancel included)."""
    @property
    def closed(self) -> bool:
        """True once close() has run."""
    def __enter__(self) -> Bucket: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        """Closes the bucket; never suppresses the exception."""
    @property
    def rate(self) -> float:
        """Tokens per second; setting it is set_rate(value)."""
    @rate.setter
    def rate(self, value: float) -> None:
        """set_rate(value)."""
    @property
    def burst(self) -> int:
        """The most tokens the bucket holds; setting it is set_burst(value)."""
    @burst.setter
    def burst(self, value: int) -> None:
        """set_burst(value)."""
    def allow(self, n: int = 1, now_ns: int | None = None) -> bool:
        """Takes n tokens now if the bucket holds them (berth_bucket_allow);
        False, taking nothing, if not. InvalidArgumentError if n < 1 or n >
        burst, or now_ns < 0."""
    def reserve(self, n: int = 1, now_ns: int | None = None) -> Reservation:
        """Takes n tokens now, into debt if need be (berth_bucket_reserve):
        act after Reservation.delay seconds, or cancel() it. Raises as allow(),
        and InvalidArgumentError, taking nothing, if the time to act would be
        after 2**63 - 1 ns."""
    def set_rate(self, rate: float, now_ns: int | None = None) -> None:
        """Changes the rate (as __init__ takes it) from now_ns on, keeping the
        tokens accrued (berth_bucket_set_rate)."""
    def set_burst(self, burst: int, now_ns: int | None = None) -> None:
        """Changes the burst (>= 1) from now_ns on; a lower burst caps the
        tokens at once (berth_bucket_set_burst)."""
    def stats(self, now_ns: int | None = None) -> BucketStats:
        """Rate, burst and the tokens at now_ns (berth_bucket_get_stats)."""
    async def wait(self, n: int = 1) -> None:
        """Reserves n tokens, then sleeps with asyncio.sleep until the caller
        may act (no await at all if it may act now). Cancelled while it
        sleeps, it cancels the reservation. Raises as reserve()."""
    def wait_blocking(self, n: int = 1) -> None:
        """Reserves n tokens, then sleeps this thread (time.sleep, GIL
        released) until the caller may act; interrupted (KeyboardInterrupt),
        it cancels the reservation. RuntimeError if this thread runs an
        asyncio event loop (use wait())."""
    def _cancel_reservation(
        self, time_to_act_ns: int, tokens: int, rate: float, now_ns: int | None = None
    ) -> None:
        """berth_bucket_cancel of a reservation's fields; Reservation.cancel()
        calls it at most once."""
