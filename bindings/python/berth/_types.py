"""Plain, immutable value types returned by berth.Engine."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["PoolKey", "PoolStats", "NodeStat"]


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
