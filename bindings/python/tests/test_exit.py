"""The process exits cleanly while daemon threads are inside Berth.

At interpreter exit CPython 3.11 ends a daemon thread that takes the GIL back
with pthread_exit; when that happened inside the extension the forced unwind
met a noexcept frame and the process aborted ("terminate called without an
active exception", status 134). Each case below is a small program whose
daemon threads are busy in calls on one handle type, or blocked in one of its
waits, when the main thread returns. It runs RUNS times in fresh interpreters
(PARALLEL at a time) and must exit with status 0 and print nothing to stderr
every time, without hanging. The last tests end a thread inside Python code
that Berth called back, as the interpreter would, and check that nothing
breaks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

RUNS = 20
PARALLEL = 4
TIMEOUT = 30  # seconds a run may take: beyond that, exit hung

# Run before `import berth` (so its atexit handlers run after berth's), then
# the case, then the main thread waits for the daemon threads to get going and
# returns, leaving them inside Berth.
PROLOGUE = """\
import asyncio, atexit, os, sys, threading, time
at_exit = []  # handles closed by an atexit handler that runs after berth's
atexit.register(lambda: [h.close() for h in at_exit])
import berth
started = threading.Event()

def daemon(fn, n=1):
    for _ in range(n):
        threading.Thread(target=fn, daemon=True).start()

def in_loop(coro_fn, n=1):
    async def main():
        await asyncio.gather(*(coro_fn() for _ in range(n)))
    daemon(lambda: asyncio.run(main()))

def wake_at_exit(limiter):
    # Releases the permit held by the main thread while the interpreter
    # finalizes (the module's globals go), so a thread waiting for it returns
    # from Berth after the runtime is marked finalizing.
    class Release:
        def __del__(self, release=limiter.release):
            release()
    global _release_at_exit
    _release_at_exit = Release()

def until(pred):
    deadline = time.monotonic() + 10
    while not pred():
        if time.monotonic() > deadline:
            sys.exit("the daemon threads never got going")
        time.sleep(0.001)
"""

EPILOGUE = """\
until(started.is_set)
time.sleep(0.005)
"""

# name -> program. Busy: daemon threads loop over the type's calls (several
# threads, so some wait for the GIL while others are inside Berth). Blocked:
# daemon threads wait in the type's blocking wait, one until the interpreter
# finalizes (wake_at_exit), others with short deadlines; or a wait nobody
# ends, or one that an atexit handler ends by closing the handle.
CASES = {
    "engine_busy": """
        eng = berth.Engine()
        for i in range(4):
            eng.add("p", "ns", f"k{i}", f"n{i % 2}", True)
        def spin():
            while True:
                k = eng.pop_spread("p")
                if k is not None:
                    eng.add("p", k.namespace, k.name, k.node, True)
                eng.stats("p"); eng.node_stats("p"); eng.snapshot("p")
                eng.add_batch("p", [("ns", "b", "n0", True)]); eng.remove("p", "ns", "b")
                started.set()
        def churn():  # close() waits for the calls in flight with the GIL released
            while True:
                with berth.Engine() as e:
                    e.add("p", "ns", "k", "n", True)
        daemon(spin, 2)
        daemon(churn)
    """,
    "cache_busy": """
        cache = berth.Cache()
        cache.replace([berth.Object("ns", f"o{i}", 1, {"app": "web"}, b"x") for i in range(8)], 1)
        sel = berth.Selector("app=web")
        rv = iter(range(2, 1 << 62))
        def spin():
            while True:
                cache.upsert("ns", "o1", next(rv), {"app": "web"}, b"y")
                for o in cache.list("ns", sel):
                    bytes(o.payload)
                cache.get("ns", "o2"); cache.stats()
                cache.apply(berth.Event(berth.EventType.MODIFIED, "ns", "o3", next(rv)))
                started.set()
        daemon(spin, 2)
    """,
    "selector_busy": """
        shared = berth.Selector("app in (web, api), !canary")
        def spin():
            while True:
                shared.matches({"app": "web"})
                with berth.Selector("tier=front,app") as s:
                    s.matches({"tier": "front", "app": "x"}); str(s)
                started.set()
        daemon(spin, 2)
    """,
    "limiter_blocked_closed_at_exit": """
        lim = berth.Limiter(1)
        lim.acquire_blocking()
        at_exit.append(lim)  # close() wakes the waiter during exit
        def block():
            started.set()
            try:
                lim.acquire_blocking()
            except berth.ClosedError:
                pass
        daemon(block)
        until(lambda: lim.stats().waiting == 1)
    """,
    "bucket_busy": """
        bucket = berth.Bucket(rate=1e9, burst=100)
        def spin():
            while True:
                bucket.allow(); bucket.reserve().cancel(); bucket.stats()
                bucket.wait_blocking()
                started.set()
        daemon(spin, 2)
    """,
    "bucket_blocked": """
        bucket = berth.Bucket(rate=0.001, burst=1)
        bucket.allow()
        def block():
            started.set()
            bucket.wait_blocking()  # about 1000 s
        daemon(block)
    """,
    "bucket_async": """
        bucket = berth.Bucket(rate=1000.0, burst=1)
        async def task():
            while True:
                await bucket.wait()
                started.set()
        in_loop(task, 2)
    """,
    "engine_busy_closed_at_exit": """
        eng = berth.Engine()
        eng.add("p", "ns", "k", "n", True)
        at_exit.append(eng)  # close() must not wait for a call that never returns
        def spin():
            try:
                while True:
                    k = eng.pop_spread("p")
                    if k is not None:
                        eng.add("p", k.namespace, k.name, k.node, True)
                    started.set()
            except berth.ClosedError:
                pass
        daemon(spin, 2)
    """,
}


# Limiter and SharedLimiter: the same programs over `lim`, a limiter of
# capacity 1 made as LIMITERS says.
LIMITERS = {
    "limiter": "lim = berth.Limiter(1)",
    "shared_limiter": """
        name = f"exit-test-{os.getpid()}"
        lim = berth.SharedLimiter(name, capacity=1)
        berth.SharedLimiter.unlink(name)  # this process keeps using it
    """,
}
LIMITER_CASES = {
    "busy": """
        def spin():
            while True:
                if lim.try_acquire():
                    lim.release()
                with lim.hold():  # waits while the other thread holds it
                    lim.stats()
                started.set()
        daemon(spin, 2)
    """,
    "blocked": """
        lim.acquire_blocking()
        wake_at_exit(lim)
        def block():
            started.set()
            lim.acquire_blocking()  # until wake_at_exit
        def poll():
            while True:
                try:
                    with lim.hold(timeout=0.001):
                        pass
                except berth.TimeoutError:
                    pass
        daemon(block)
        daemon(poll)
        until(lambda: lim.stats().waiting >= 1)
    """,
    "async_busy": """
        async def task():
            while True:
                async with lim.acquire():
                    await asyncio.sleep(0)
                started.set()
        in_loop(task, 3)
    """,
    "async_blocked": """
        lim.acquire_blocking()
        async def task():
            started.set()
            async with lim.acquire():
                pass
        in_loop(task)
        until(lambda: lim.stats().waiting == 1)
    """,
}
CASES.update(
    (f"{kind}_{case}", textwrap.dedent(make) + textwrap.dedent(body))
    for kind, make in LIMITERS.items()
    for case, body in LIMITER_CASES.items()
)


def program(case: str) -> str:
    return PROLOGUE + textwrap.dedent(CASES[case]) + EPILOGUE


def run_once(source: str) -> str | None:
    """None if the program exited cleanly, else what went wrong."""
    # -S: PYTHONPATH carries this interpreter's sys.path, and the site hooks
    # would cost a quarter of a run.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    try:
        p = subprocess.run(
            [sys.executable, "-S", "-c", source], capture_output=True, text=True, timeout=TIMEOUT, env=env
        )
    except subprocess.TimeoutExpired:
        return "hung"
    if p.returncode == 0 and not p.stderr:
        return None
    last = p.stderr.strip().splitlines()[-1:] or [""]
    return f"exit status {p.returncode}: {last[0][:120]}"


EXIT_TEST = "test_exit_with_daemon_threads_inside_berth_is_clean"


@pytest.fixture(scope="module")
def failures(request: pytest.FixtureRequest) -> dict[str, Counter[str]]:
    """What went wrong in the RUNS runs of each selected case, all run through
    one pool (so that no case waits for the slowest run of the one before)."""
    cases = sorted(
        {item.callspec.params["case"] for item in request.session.items if item.originalname == EXIT_TEST}
    )
    jobs = [case for case in cases for _ in range(RUNS)]
    with ThreadPoolExecutor(PARALLEL) as pool:
        outcomes = pool.map(run_once, [program(case) for case in jobs])
        out: dict[str, Counter[str]] = {case: Counter() for case in cases}
        for case, outcome in zip(jobs, outcomes):
            if outcome is not None:
                out[case][outcome] += 1
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_exit_case_program_reaches_its_end(case):
    # Each program works as written (its threads get going, nothing raises)
    # when exit itself is taken out of the picture.
    assert run_once(program(case) + "os._exit(0)\n") is None


@pytest.mark.parametrize("case", sorted(CASES))
def test_exit_with_daemon_threads_inside_berth_is_clean(case, failures):
    failed = failures[case]
    assert not failed, f"{sum(failed.values())}/{RUNS} runs failed: {dict(failed)}"


# A thread running Python code that Berth called back (a generator passed to
# add_batch, a NamedTuple's __new__) is ended there by the interpreter's
# pthread_exit, not in Berth: the forced unwind would then cross the
# extension's frames and drop references without the GIL. These programs
# make that pthread_exit happen on purpose (ctypes calls it with the GIL
# released, as take_gil leaves it) and check that the process is unharmed.
PTHREAD_EXIT_PROLOGUE = """\
import ctypes, threading, time
import berth
libc = ctypes.CDLL(None)
libc.pthread_exit.argtypes = [ctypes.c_void_p]
reached = threading.Event()

def die():
    reached.set()
    libc.pthread_exit(None)

def keys():
    die()
    yield ("ns", "k", "n", True)

class Attrs:
    @property
    def namespace(self):
        die()
    name = "o"; node = "n"; ready = True; resource_version = 1

class Labels:
    def keys(self): return ["app"]
    def __getitem__(self, key): return "web"
    def items(self): die()
"""

PTHREAD_EXIT_SITES = {
    "add_batch_iterator": 'berth.Engine().add_batch("p", keys())',
    "add_batch_attributes": 'berth.Engine().add_batch("p", [Attrs()])',
    "apply_iterator": "berth.Cache().apply(iter([berth.Event('ADDED', 'ns', 'o', 1), *keys()]))",
    "replace_attributes": "berth.Cache().replace([Attrs()], 1)",
    "upsert_labels": 'berth.Cache().upsert("ns", "o", 1, Labels())',
    "stats_namedtuple": (
        "new = berth.PoolStats.__new__\n"
        "berth.PoolStats.__new__ = lambda cls, *a: (die(), new(cls, *a))[1]\n"
        'e = berth.Engine(); e.add("p", "ns", "k"); e.stats("p")'
    ),
    "raise_error": (
        "berth.InvalidNameError.__init__ = lambda self, *a: die()\n"
        'berth.Engine().add("p", "ns", "")'
    ),
    "reserve_reservation": (
        "berth.Reservation.__init__ = lambda self, *a: die()\n"
        "berth.Bucket(rate=1.0, burst=1).reserve()"
    ),
}


@pytest.mark.parametrize("site", sorted(PTHREAD_EXIT_SITES))
def test_exit_thread_ended_in_python_code_called_from_berth_harms_nothing(site):
    body = textwrap.indent(PTHREAD_EXIT_SITES[site], "    ")
    source = (
        PTHREAD_EXIT_PROLOGUE
        + f"def target():\n{body}\n"
        + "threading.Thread(target=target, daemon=True).start()\n"
        + "assert reached.wait(10)\n"
        + "time.sleep(0.05)\n"
    )
    assert run_once(source) is None
