"""Python binding of Berth, an embedded scheduling engine.

The native part (berth._berth) is a thin pybind11 module over the C ABI in
capi/berth.h; libberth.so ships next to it in this package.

    import berth
    with berth.Engine() as engine:
        engine.add("ns/warm", "ns", "sandbox-1", node="node-a")
        key = engine.pop_spread("ns/warm")

    with berth.Cache() as cache:
        cache.replace([berth.Object("ns", "pod-1", 5, {"app": "web"}, b"{}")], 5)
        for obj in cache.list("ns", "app=web"):
            print(obj.name, bytes(obj.payload))

    limiter = berth.Limiter(100)          # weighted permits, FIFO waiters
    async with limiter.acquire(2):        # asyncio: never blocks the loop
        ...
    with limiter.hold(2):                 # threads: blocks this thread
        ...
    bucket = berth.Bucket(rate=50.0, burst=10)  # golang.org/x/time/rate
    await bucket.wait()                   # or bucket.allow(), bucket.reserve()

    # One capacity for every worker process of the host (open it before or
    # after the fork); permits of a process that dies come back.
    shared = berth.SharedLimiter("api-workers", capacity=8)
    async with shared.acquire():
        ...

Threads at interpreter exit: daemon threads may be inside Berth (in a call,
or blocked in a wait) when the program ends. Once berth's atexit handler has
run, a thread returning from Berth never takes the GIL back: it sleeps until
the process is gone, so exit neither waits for it nor aborts (CPython 3.11
would end it with pthread_exit inside the extension, which aborts the
process). atexit handlers registered before `import berth` run after that
point: they must not wait for such a thread, and close() there leaves a
handle that such a thread was using allocated instead of waiting for it.
"""

from __future__ import annotations

from ._errors import (
    BadBufferError,
    BadRegionError,
    BadHandleError,
    ForkedError,
    BadSelectorError,
    ClosedError,
    Error,
    InternalError,
    InvalidArgumentError,
    InvalidNameError,
    NotFoundError,
    NotSyncedError,
    OutOfMemoryError,
    Status,
)
from ._errors import TimeoutError as TimeoutError  # exported, but not in __all__ (see below)
from ._types import (
    BucketStats,
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


def _native_import_error(exc: ImportError) -> str:
    """The message for a failed import of berth._berth: what actually failed.

    Only a package directory without the extension file is the source tree
    (bindings/python/berth on sys.path); anything else is a real load error
    (libberth.so.0 missing, a missing symbol or GLIBCXX version, an ABI
    mismatch), and its text is the useful part.
    """
    import importlib.machinery
    import pathlib

    pkg_dir = pathlib.Path(__file__).resolve().parent
    has_extension = any(
        (pkg_dir / f"_berth{suffix}").is_file() for suffix in importlib.machinery.EXTENSION_SUFFIXES
    )
    if not has_extension:
        return (
            f"berth: the native module berth._berth is not in {pkg_dir} ({exc}); this looks "
            "like the source tree (bindings/python/berth): install the package "
            "(pip install <repo root>) and import it from there instead."
        )
    return f"berth: cannot load the native module berth._berth from {pkg_dir}: {exc}"


try:
    from ._berth import (
        ABI_VERSION,
        MAX_LABELS,
        MAX_NAME_LEN,
        MAX_NAMESPACE_LEN,
        MAX_NODE_LEN,
        MAX_PAYLOAD_LEN,
        MAX_POOL_LEN,
        POOL_PUT_BACK_WINDOW,
        Bucket,
        Cache,
        Engine,
        Limiter,
        ObjectList,
        ObjectView,
        Selector,
        SharedLimiter,
        abi_version,
        clock_now_ns,
    )
except ImportError as _exc:  # pragma: no cover - only on a broken install
    raise ImportError(_native_import_error(_exc)) from _exc

# "X.Y.Z": the BERTH_ABI_VERSION_* macros of the berth.h the extension was
# compiled against, which are also the distribution's version.
__version__: str = f"{ABI_VERSION // 10000}.{ABI_VERSION // 100 % 100}.{ABI_VERSION % 100}"

__all__ = [
    "ABI_VERSION",
    "MAX_LABELS",
    "MAX_NAME_LEN",
    "MAX_NAMESPACE_LEN",
    "MAX_NODE_LEN",
    "MAX_PAYLOAD_LEN",
    "MAX_POOL_LEN",
    "POOL_PUT_BACK_WINDOW",
    "BadBufferError",
    "BadRegionError",
    "BadHandleError",
    "ForkedError",
    "BadSelectorError",
    "Bucket",
    "BucketStats",
    "Cache",
    "CacheStats",
    "ClosedError",
    "Engine",
    "Error",
    "Event",
    "EventType",
    "InternalError",
    "InvalidArgumentError",
    "InvalidNameError",
    "Limiter",
    "LimiterStats",
    "NodeStat",
    "NotFoundError",
    "NotSyncedError",
    "Object",
    "ObjectList",
    "ObjectView",
    "OutOfMemoryError",
    "PoolKey",
    "PoolStats",
    "Refusal",
    "Reservation",
    "Selector",
    "SharedLimiter",
    "SharedLimiterStats",
    "Status",
    "abi_version",
    "clock_now_ns",
]
# berth.TimeoutError (BERTH_ERR_TIMEOUT, also a builtin TimeoutError) is
# deliberately left out of __all__: `from berth import *` must not shadow the
# builtin.
