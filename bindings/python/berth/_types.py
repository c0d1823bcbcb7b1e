"""Plain, immutable value types taken and returned by berth.Engine and berth.Cache."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple, Union

__all__ = ["PoolKey", "PoolStats", "NodeStat", "EventType", "Event", "Object", "CacheStats", "BytesLike"]

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
