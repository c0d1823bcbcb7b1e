"""Python binding of Berth, an embedded scheduling engine.

The native part (berth._berth) is a thin pybind11 module over the C ABI in
capi/berth.h; libberth.so ships next to it in this package.

    import berth
    with berth.Engine() as engine:
        engine.add("ns/warm", "ns", "sandbox-1", node="node-a")
        key = engine.pop_spread("ns/warm")
"""

from __future__ import annotations

from ._errors import (
    BadBufferError,
    ClosedError,
    Error,
    InternalError,
    InvalidArgumentError,
    InvalidNameError,
    NotFoundError,
    OutOfMemoryError,
    Status,
)
from ._types import NodeStat, PoolKey, PoolStats

try:
    from ._berth import (
        ABI_VERSION,
        MAX_NAME_LEN,
        MAX_NAMESPACE_LEN,
        MAX_NODE_LEN,
        MAX_POOL_LEN,
        POOL_PUT_BACK_WINDOW,
        Engine,
        abi_version,
    )
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        f"berth: cannot load the native module ({exc}). Install the package "
        "(pip install <repo root>) rather than importing it from the source tree."
    ) from exc

__all__ = [
    "ABI_VERSION",
    "MAX_NAME_LEN",
    "MAX_NAMESPACE_LEN",
    "MAX_NODE_LEN",
    "MAX_POOL_LEN",
    "POOL_PUT_BACK_WINDOW",
    "BadBufferError",
    "ClosedError",
    "Engine",
    "Error",
    "InternalError",
    "InvalidArgumentError",
    "InvalidNameError",
    "NodeStat",
    "NotFoundError",
    "OutOfMemoryError",
    "PoolKey",
    "PoolStats",
    "Status",
    "abi_version",
]
