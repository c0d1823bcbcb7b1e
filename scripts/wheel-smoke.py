"""Smoke test of an installed berth wheel (run by scripts/wheel, in a fresh
venv, from a directory outside the repository, with the host's libmimalloc
and libflatbuffers hidden). Argument: the version the package must report."""

import asyncio
import importlib.metadata
import os
import pathlib
import sys

import berth

expected = sys.argv[1]
pkg = pathlib.Path(berth.__file__).resolve().parent
assert pkg.is_relative_to(pathlib.Path(sys.prefix).resolve()), f"berth imported from {pkg}, not the venv {sys.prefix}"
assert berth.__version__ == expected, (berth.__version__, expected)
assert importlib.metadata.version("berth") == expected, importlib.metadata.version("berth")
print(f"berth {berth.__version__} from {pkg}")

with berth.Engine() as engine:
    assert engine.add("ns/warm", "ns", "sandbox-1", node="node-a")
    assert engine.add("ns/warm", "ns", "sandbox-2", node="node-b")
    key = engine.pop_spread("ns/warm")
    assert key is not None and key.name in ("sandbox-1", "sandbox-2"), key
    assert engine.stats("ns/warm").keys == 1

with berth.Cache() as cache:
    cache.replace([], 1)
    assert cache.upsert("ns", "pod-1", 2, {"app": "web"}, b"{}")
    assert cache.upsert("ns", "pod-2", 3, {"app": "db"}, b"{}")
    with berth.Selector("app=web") as sel:
        names = [o.name for o in cache.list("ns", sel)]
    assert names == ["pod-1"], names

limiter = berth.Limiter(2)
assert limiter.try_acquire(2) and not limiter.try_acquire(1)
limiter.release(2)


async def use_limiter() -> None:
    async with limiter.acquire(1):
        assert not limiter.try_acquire(2)


asyncio.run(use_limiter())
limiter.close()

name = f"berth-wheel-smoke-{os.getpid()}"
shared = berth.SharedLimiter(name, capacity=1)
try:
    assert shared.try_acquire() and not shared.try_acquire()
    shared.release()
finally:
    shared.close()
    berth.SharedLimiter.unlink(name)

maps = pathlib.Path("/proc/self/maps").read_text()
mapped = {line.split()[-1] for line in maps.splitlines() if "/" in line}
assert not [p for p in mapped if "mimalloc" in p or "flatbuffers" in p], mapped
libberth = [p for p in mapped if "libberth" in p]
assert libberth and all(pathlib.Path(p).resolve().is_relative_to(pkg.parent) for p in libberth), libberth
print("libberth from", *libberth)
