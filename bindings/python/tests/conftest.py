"""Shared fixtures of the berth binding tests.

Run against the installed package: `pip install .` at the repo root, then
`python -m pytest bindings/python/tests` (from the root or anywhere but
bindings/python, so that the source tree's berth/ is not imported instead).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import berth

POOL = "ns/warm"


@pytest.fixture
def engine() -> Iterator[berth.Engine]:
    e = berth.Engine()
    try:
        yield e
    finally:
        e.close()


def names(keys: list[berth.PoolKey] | list[berth.PoolKey | None]) -> list[str]:
    """The names of keys, in order (None for an empty pop)."""
    return [k.name if k is not None else None for k in keys]  # type: ignore[misc]


def drain(engine: berth.Engine, pool: str = POOL, spread: bool = True) -> list[berth.PoolKey]:
    """Pops until the pool is empty."""
    out = []
    pop = engine.pop_spread if spread else engine.pop_fifo
    while (k := pop(pool)) is not None:
        out.append(k)
    return out
