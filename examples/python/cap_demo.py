#!/usr/bin/env python3
"""One concurrency cap for every worker process of a host: berth.SharedLimiter
against an asyncio.Semaphore per worker.

Starts worker_server.py twice (N workers, capacity C; --limit berth, then
--limit local), drives each from loopback with a bounded load (--clients
keep-alive HTTP/1.1 connections, each sending GET /work back to back for
--seconds; a plain asyncio client), and prints side by side: the peak number
of requests inside the limited section across all workers (counted exactly by
the server in shared memory), requests served, and latency percentiles.

With a semaphore per worker the host admits up to N * C at once, depending on
how the connections happen to be spread over the workers: keep-alive pins
each connection to the worker that accepted it. With the shared limiter the
host never admits more than C, whichever workers hold the connections.

Exits non-zero if the berth server ever had more than C requests inside, or
if a server did not start or stop cleanly (exit 0 and its shared-memory region
unlinked). About 10 s; fine on a 2-core machine.

Install the binding first (`pip install .` at the repo root), then
    python3 examples/python/cap_demo.py [--workers 4] [--capacity 8] [--clients 64] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import signal
import statistics
import sys
import time
from typing import Any

SERVER = pathlib.Path(__file__).with_name("worker_server.py")
SHM = pathlib.Path("/dev/shm")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        key, _, value = line.decode("latin-1").partition(":")
        if key.strip().lower() == "content-length":
            length = int(value)
    return int(status_line.split()[1]), await reader.readexactly(length)


async def client(port: int, start_delay: float, deadline: float, latencies: list[float], errors: list[str]) -> None:
    """One keep-alive connection sending GET /work until the deadline."""
    await asyncio.sleep(start_delay)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        errors.append(f"connect: {exc}")
        return
    try:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            writer.write(b"GET /work HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, _ = await read_response(reader)
            if status != 200:
                errors.append(f"status {status}")
                return
            latencies.append(time.perf_counter() - t0)
    except (OSError, asyncio.IncompleteReadError) as exc:
        errors.append(repr(exc))
    finally:
        writer.close()


async def get_stats(port: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    status, body = await read_response(reader)
    writer.close()
    assert status == 200, status
    return json.loads(body)


async def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SERVER), "--limit", mode, "--workers", str(args.workers),
        "--capacity", str(args.capacity), "--hold", str(args.hold),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    result: dict[str, Any] = {"mode": mode, "problems": []}
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()  # type: ignore[union-attr]
        if not line.startswith("ready "):
            raise RuntimeError(f"the {mode} server did not start: {line!r}")
        fields = dict(kv.split("=", 1) for kv in line.split()[1:])
        port, limiter = int(fields["port"]), fields["limiter"]

        latencies: list[float] = []
        errors: list[str] = []
        # Connections open over the first ~0.3 s, as a load balancer's would
        # over time; each stays with the worker that accepted it.
        t0 = time.monotonic()
        deadline = t0 + args.seconds
        stagger = 0.3 / args.clients
        await asyncio.gather(*(client(port, i * stagger, deadline, latencies, errors) for i in range(args.clients)))
        elapsed = time.monotonic() - t0
        stats = await get_stats(port)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 15)
        except TimeoutError:
            proc.kill()
            _, err = await proc.communicate()
            result["problems"].append("the server did not stop within 15 s of SIGTERM")
    if proc.returncode != 0:
        result["problems"].append(f"the server exited with {proc.returncode}: {err.decode().strip()}")
    if limiter != "-" and (SHM / f"berth.{limiter}").exists():
        result["problems"].append(f"/dev/shm/berth.{limiter} is still there after shutdown")
    if errors:
        result["problems"].append(f"{len(errors)} client errors, e.g. {errors[0]}")
    lat = sorted(latencies)
    result.update(
        peak=stats["peak"],
        served=stats["served"],
        rate=len(lat) / elapsed,
        p50=statistics.median(lat) * 1e3 if lat else float("nan"),
        p99=lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3 if lat else float("nan"),
        worker_peaks=[w["peak"] for w in stats["per_worker"]],
        worker_conns=[w["connections"] for w in stats["per_worker"]],
        limiter=stats["limiter"],
    )
    return result


def table(args: argparse.Namespace, berth_r: dict[str, Any], local_r: dict[str, Any]) -> str:
    c, n = args.capacity, args.workers
    rows = [
        ("", "berth.SharedLimiter", "asyncio.Semaphore/worker"),
        ("limit", f"{c} per host", f"{c} per worker ({n * c} per host)"),
        ("peak inside /work, host-wide", str(berth_r["peak"]), str(local_r["peak"])),
        ("  peak per worker", str(berth_r["worker_peaks"]), str(local_r["worker_peaks"])),
        ("  connections per worker", str(berth_r["worker_conns"]), str(local_r["worker_conns"])),
        ("requests served", str(berth_r["served"]), str(local_r["served"])),
        ("throughput (req/s)", f"{berth_r['rate']:.0f}", f"{local_r['rate']:.0f}"),
        ("latency p50 (ms)", f"{berth_r['p50']:.1f}", f"{local_r['p50']:.1f}"),
        ("latency p99 (ms)", f"{berth_r['p99']:.1f}", f"{local_r['p99']:.1f}"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}   {b:>{widths[1]}}   {d:>{widths[2]}}" for a, b, d in rows)


async def amain(args: argparse.Namespace) -> int:
    print(
        f"{args.workers} workers, C = {args.capacity}, {args.clients} keep-alive clients for {args.seconds:g} s, "
        f"each /work request holds its permit {args.hold * 1e3:g} ms"
    )
    results = {}
    for mode in ("berth", "local"):
        results[mode] = await run_mode(mode, args)
    berth_r, local_r = results["berth"], results["local"]
    print()
    print(table(args, berth_r, local_r))
    print()
    lim = berth_r["limiter"]
    print(f"berth limiter at the end: in_use={lim['in_use']} waiting={lim['waiting']} granted={lim['granted']}")

    code = 0
    for mode, r in results.items():
        for p in r["problems"]:
            print(f"PROBLEM ({mode}): {p}")
            code = 1
    if berth_r["peak"] > args.capacity:
        print(f"FAIL: the shared limiter let {berth_r['peak']} requests in at once; its capacity is {args.capacity}")
        code = 1
    else:
        print(f"ok: with berth.SharedLimiter at most {berth_r['peak']} <= C = {args.capacity} requests were inside at once")
    if local_r["peak"] > args.capacity:
        print(f"    with a semaphore per worker the host had {local_r['peak']} inside at once (C = {args.capacity})")
    else:
        print("    (this run spread the connections so that the per-worker semaphores stayed within C)")
    return code


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--capacity", type=int, default=8)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--hold", type=float, default=0.05)
    args = ap.parse_args(argv)
    if os.environ.get("PYTHONASYNCIODEBUG"):
        print("note: asyncio debug mode slows the client down", file=sys.stderr)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
