#!/usr/bin/env python3
"""A pre-fork asyncio HTTP server whose workers share one concurrency limit.

The parent binds one listening socket on loopback and forks N worker
processes that all accept on it (plain asyncio streams, no third-party
packages). GET /work holds one permit of the limiter for --hold seconds
(`await asyncio.sleep`) and answers 200; GET /stats answers JSON counters.

  --limit berth   one berth.SharedLimiter(capacity C) for the whole host,
                  opened by each worker after the fork: at most C requests
                  are inside the limited section, whichever workers took
                  them. A worker that dies holding permits gives them back.
  --limit local   an asyncio.Semaphore(C) per worker: the bug this replaces.
                  Each worker admits C, so the host admits up to N * C,
                  depending on how the (keep-alive) connections happen to be
                  spread over the workers.

Every worker counts the requests inside the limited section, host-wide, in
shared memory made before the fork (a multiprocessing RawArray, updated under
a multiprocessing Lock: a few microseconds per request), so the peak
concurrency across the host is exact, not sampled. /stats reports it.

On stdout the parent prints one line when every worker is serving:
    ready port=<port> workers=<pid,pid,...> limiter=<name or ->
SIGTERM (or Ctrl-C) stops it: the workers stop accepting, finish or drop
their connections and exit, and the parent unlinks the shared limiter
(/dev/shm/berth.<name>) once they are gone. (If the parent itself is killed
with SIGKILL the region stays; SharedLimiter.unlink(name) removes it.)

Install the binding first (`pip install .` at the repo root), then e.g.
    python3 examples/python/worker_server.py --limit berth --workers 4 --capacity 8
    curl -s localhost:<port>/work; curl -s localhost:<port>/stats
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import sys
import time
from typing import Any

import berth

# The shared counters: slot layout of a RawArray('q') made before the fork.
IN_FLIGHT, PEAK, SERVED, WORKER_BASE = 0, 1, 2, 3
PER_WORKER = 5  # in_flight, peak, served, connections, queued


class Counters:
    """Host-wide counts of the requests inside the limited section, in memory
    shared by the parent and the workers."""

    def __init__(self, workers: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self.workers = workers
        self.slots = ctx.RawArray("q", WORKER_BASE + PER_WORKER * workers)
        self.lock = ctx.Lock()

    def _w(self, worker: int, field: int) -> int:
        return WORKER_BASE + PER_WORKER * worker + field

    def queue(self, worker: int, delta: int) -> None:
        """A request starts (+1) or stops (-1) waiting for the limiter."""
        with self.lock:
            self.slots[self._w(worker, 4)] += delta

    def enter(self, worker: int) -> None:
        """A request waiting for the limiter got in."""
        s, w = self.slots, self._w(worker, 0)
        with self.lock:
            s[w + 4] -= 1
            s[IN_FLIGHT] += 1
            if s[IN_FLIGHT] > s[PEAK]:
                s[PEAK] = s[IN_FLIGHT]
            s[w] += 1
            if s[w] > s[w + 1]:
                s[w + 1] = s[w]

    def leave(self, worker: int) -> None:
        s, w = self.slots, self._w(worker, 0)
        with self.lock:
            s[IN_FLIGHT] -= 1
            s[SERVED] += 1
            s[w] -= 1
            s[w + 2] += 1

    def connected(self, worker: int) -> None:
        with self.lock:
            self.slots[self._w(worker, 3)] += 1

    def snapshot(self) -> dict[str, Any]:
        s = self.slots
        with self.lock:
            return {
                "in_flight": s[IN_FLIGHT],
                "peak": s[PEAK],
                "served": s[SERVED],
                "per_worker": [
                    {
                        "in_flight": s[self._w(i, 0)],
                        "peak": s[self._w(i, 1)],
                        "served": s[self._w(i, 2)],
                        "connections": s[self._w(i, 3)],
                        "queued": s[self._w(i, 4)],
                    }
                    for i in range(self.workers)
                ],
            }


# --------------------------------------------------------------------------
# A worker
# --------------------------------------------------------------------------


class Worker:
    def __init__(self, index: int, args: argparse.Namespace, counters: Counters, limiter_name: str | None) -> None:
        self.index = index
        self.args = args
        self.counters = counters
        self.limiter_name = limiter_name
        self.shared: berth.SharedLimiter | None = None
        self.local: asyncio.Semaphore | None = None
        self.handlers: set[asyncio.Task[None]] = set()

    def limit(self) -> Any:
        """The async context manager of the limited section."""
        if self.shared is not None:
            return self.shared.acquire()
        assert self.local is not None
        return self.local

    async def work(self) -> bytes:
        c, i = self.counters, self.index
        c.queue(i, +1)
        entered = False
        try:
            async with self.limit():
                c.enter(i)
                entered = True
                try:
                    await asyncio.sleep(self.args.hold)
                finally:
                    c.leave(i)
        finally:
            if not entered:  # cancelled (or failed) while waiting
                c.queue(i, -1)
        return b"ok\n"

    def stats_body(self) -> bytes:
        out = {
            "mode": self.args.limit,
            "workers": self.args.workers,
            "capacity": self.args.capacity,
            **self.counters.snapshot(),
            "limiter": self.shared.stats()._asdict() if self.shared is not None else None,
        }
        return json.dumps(out).encode() + b"\n"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.counters.connected(self.index)
        try:
            while True:  # one request after another: HTTP/1.1 keep-alive
                request_line = await reader.readline()
                if not request_line:
                    return
                headers: dict[str, str] = {}
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    key, _, value = line.decode("latin-1").partition(":")
                    headers[key.strip().lower()] = value.strip()
                if int(headers.get("content-length", "0") or 0) > 0:
                    await reader.readexactly(int(headers["content-length"]))
                parts = request_line.decode("latin-1").split()
                method, target, version = (parts + ["", "", ""])[:3]
                if method != "GET":
                    status, body = "405 Method Not Allowed", b"GET only\n"
                elif target == "/work":
                    status, body = "200 OK", await self.work()
                elif target == "/stats":
                    status, body = "200 OK", self.stats_body()
                else:
                    status, body = "404 Not Found", b"not found\n"
                close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n"
                    f"Content-Type: text/plain\r\nConnection: {'close' if close else 'keep-alive'}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.handlers.discard(task)
            writer.close()

    async def serve(self, sock: socket.socket, ready_fd: int) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        if self.limiter_name is not None:
            # Opened here, after the fork: a handle's asynchronous waits are
            # served by a thread of the process that opened it.
            self.shared = berth.SharedLimiter(self.limiter_name)
        else:
            self.local = asyncio.Semaphore(self.args.capacity)
        server = await asyncio.start_server(self.handle, sock=sock, backlog=1024)
        os.write(ready_fd, b"r")
        os.close(ready_fd)
        await stop.wait()
        server.close()  # stops accepting; established connections are ours to end
        for task in list(self.handlers):
            task.cancel()
        if self.handlers:
            await asyncio.wait(list(self.handlers), timeout=2)
        if self.shared is not None:
            self.shared.close()


def run_worker(index: int, args: argparse.Namespace, counters: Counters, limiter_name: str | None,
               sock: socket.socket, ready_fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 0
    try:
        asyncio.run(Worker(index, args, counters, limiter_name).serve(sock, ready_fd))
    except BaseException as exc:  # noqa: BLE001 - reported, then the worker exits
        print(f"worker {os.getpid()}: {exc!r}", file=sys.stderr, flush=True)
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # never run the parent's atexit handlers in a child


# --------------------------------------------------------------------------
# The parent
# --------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", choices=["berth", "local"], default="berth")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--capacity", type=int, default=8, help="C: requests inside /work at once")
    ap.add_argument("--hold", type=float, default=0.05, help="seconds a /work request holds its permit")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: any free port (printed on the ready line)")
    ap.add_argument("--name", help="shared limiter name (default: worker-server-<pid>)")
    args = ap.parse_args(argv)
    if args.workers < 1 or args.capacity < 1:
        ap.error("--workers and --capacity must be >= 1")

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    port = sock.getsockname()[1]

    limiter_name: str | None = None
    creator: berth.SharedLimiter | None = None
    if args.limit == "berth":
        limiter_name = args.name or f"worker-server-{os.getpid()}"
        creator = berth.SharedLimiter(limiter_name, args.capacity)
        creator.capacity = args.capacity  # an existing region keeps its own otherwise
        creator.close()  # the parent never waits on it; workers open their own

    counters = Counters(args.workers)
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    ready_r, ready_w = os.pipe()
    children: dict[int, int] = {}  # pid -> worker index
    for i in range(args.workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the worker
            os.close(ready_r)
            run_worker(i, args, counters, limiter_name, sock, ready_w)
        children[pid] = i
    os.close(ready_w)
    sock.close()  # the workers have it

    code = 0
    try:
        got = 0
        while got < args.workers and not stopping:
            try:
                chunk = os.read(ready_r, args.workers)
            except InterruptedError:
                continue
            if not chunk:  # every worker closed its end: some died first
                break
            got += len(chunk)
        os.close(ready_r)
        if got < args.workers:
            print(f"only {got} of {args.workers} workers started", file=sys.stderr)
            code = 1
            stopping = True
        else:
            print(f"ready port={port} workers={','.join(map(str, children))} limiter={limiter_name or '-'}", flush=True)

        # Serve until told to stop (or until every worker died). Polled: a
        # blocking waitpid would be resumed after the signal handler (PEP 475).
        while children and not stopping:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                time.sleep(0.05)
                continue
            i = children.pop(pid)
            print(f"worker {i} (pid {pid}) exited: {os.waitstatus_to_exitcode(status)}", file=sys.stderr, flush=True)
            code = 1
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                if time.monotonic() > deadline:
                    for p in children:
                        os.kill(p, signal.SIGKILL)
                    deadline = float("inf")
                time.sleep(0.02)
                continue
            if os.waitstatus_to_exitcode(status) != 0:
                print(f"worker pid {pid} exited: {os.waitstatus_to_exitcode(status)}", file=sys.stderr)
                code = 1
            children.pop(pid, None)
        if limiter_name is not None:
            try:
                berth.SharedLimiter.unlink(limiter_name)
            except berth.NotFoundError:
                pass
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
