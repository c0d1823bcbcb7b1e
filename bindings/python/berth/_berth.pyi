"""Type stubs of berth._berth, the native module over Berth's C ABI (berth.h).

Every Engine method may raise:
    ClosedError: the engine was closed.
    TypeError: an argument has the wrong type (names must be str, flags bool).
    InvalidNameError: a name is empty where it must not be, longer than its
        limit (in UTF-8 bytes: pool 1..MAX_POOL_LEN, namespace
        0..MAX_NAMESPACE_LEN, name 1..MAX_NAME_LEN, node 0..MAX_NODE_LEN),
        contains NUL, or cannot be encoded as UTF-8 (lone surrogates).
    OutOfMemoryError, InternalError: failures inside Berth.
A failed call changes nothing. Every method releases the GIL while Berth
works, and an Engine may be used from many threads at once.
"""

from collections.abc import Iterable
from types import TracebackType
from typing import Protocol

from ._types import NodeStat, PoolKey, PoolStats

ABI_VERSION: int
"""BERTH_ABI_VERSION of the berth.h this module was compiled against."""
MAX_POOL_LEN: int
MAX_NAMESPACE_LEN: int
MAX_NAME_LEN: int
MAX_NODE_LEN: int
POOL_PUT_BACK_WINDOW: int
"""How many later hand-outs a hand-out stays eligible for put_back."""
_STATUS_NAMES: dict[int, str]

def abi_version() -> int:
    """BERTH_ABI_VERSION of the loaded libberth (MAJOR*10000 + MINOR*100 + PATCH).

    At import the binding checks that its major equals ABI_VERSION's and that
    the library is not older than ABI_VERSION."""

class _KeyLike(Protocol):
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def node(self) -> str: ...
    @property
    def ready(self) -> bool: ...

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
    ) -> bool:
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
