"""fork while other threads are inside Berth calls (berth.h, "fork").

In the child: Engine, Cache, Limiter and Bucket made by the parent raise
ForkedError at once and close() drops them without waiting for calls of
threads that do not exist there; Selector and SharedLimiter work; new handles
work. The child never hangs: each one must finish its calls and close() (the
parent gives it 10 s, which only a hang exceeds)."""

import os
import signal
import threading
import time
import uuid

import pytest

import berth

FORKS = 200


def _child(world) -> int:
    eng, cache, sel, lim, bucket, shared = world
    step = 0
    for call in (
        lambda: eng.add("p", "ns", "x", "n", True),
        lambda: eng.pop_spread("p"),
        lambda: cache.upsert("ns", "o", 1, {"app": "web"}, b""),
        lambda: lim.try_acquire(),
        lambda: bucket.allow(),
    ):
        step += 1
        try:
            call()
            return step
        except berth.ForkedError:
            pass
    step += 1
    if not sel.matches({"app": "web"}):
        return step
    step += 1
    if shared.try_acquire():
        shared.release()
    step += 1
    with berth.Engine() as mine:
        mine.add("p", "ns", "k", "n", True)
        if mine.pop_spread("p") is None:
            return step
    step += 1
    for h in world:
        h.close()
    return 0


def test_200_forks_while_4_threads_per_handle_type_are_inside_calls():
    name = "pytest-fork-" + uuid.uuid4().hex[:8]
    eng = berth.Engine()
    for i in range(64):
        eng.add("p", "ns", f"k{i}", "n", True)
    cache = berth.Cache()
    sel = berth.Selector("app in (web,api)")
    lim = berth.Limiter(2)
    bucket = berth.Bucket(1e9, 1000)
    shared = berth.SharedLimiter(name, 2)
    world = (eng, cache, sel, lim, bucket, shared)
    stop = threading.Event()

    def pool(_):
        k = eng.pop_spread("p")
        if k is not None:
            eng.add("p", k.namespace, k.name, k.node, True)

    def cache_writer(t):
        cache.upsert("ns", f"o{t}", int(time.monotonic_ns()), {"app": "web"}, b"x")
        cache.delete("ns", f"o{t}")

    def selector(_):
        sel.matches({"app": "api"})
        str(sel)

    def limiter(t):
        if t < 2:
            if lim.try_acquire():
                lim.release()
        else:
            try:
                lim.acquire_blocking(1, timeout=0.001)
                lim.release()
            except berth.Error:
                pass

    def rate(_):
        bucket.allow()

    def shared_limiter(t):
        if shared.try_acquire():
            shared.release()

    threads = []
    for body in (pool, cache_writer, selector, limiter, rate, shared_limiter):
        for t in range(4):
            def run(body=body, t=t):
                while not stop.is_set():
                    body(t)
            threads.append(threading.Thread(target=run, daemon=True))
    for th in threads:
        th.start()
    failures, hung, slowest = [], 0, 0.0
    try:
        for i in range(FORKS):
            time.sleep(0.001)
            start = time.monotonic()
            pid = os.fork()
            if pid == 0:
                code = 99
                try:
                    code = _child(world)
                finally:
                    os._exit(code)
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() - start > 10:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    hung += 1
                    status = None
                    break
                time.sleep(0.0005)
            slowest = max(slowest, time.monotonic() - start)
            if status is not None and os.waitstatus_to_exitcode(status) != 0:
                failures.append((i, os.waitstatus_to_exitcode(status)))
    finally:
        stop.set()
        lim.set_capacity(1000)
        for th in threads:
            th.join(5)
    print(f"{FORKS} forks, slowest child {slowest * 1000:.0f} ms")
    assert hung == 0
    assert failures == []
    # The parent's handles are untouched.
    assert eng.pop_spread("p") is not None
    assert shared.stats().in_use == 0
    for h in world:
        h.close()
    berth.SharedLimiter.unlink(name)
