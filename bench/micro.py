"""Micro-benchmarks of two costs the profiles point at, each in a process of its own.

    python -m bench.micro store  --db FILE --jobs FILE --ops N --concurrency C
    python -m bench.micro sql    --db FILE --jobs FILE --ops N
    python -m bench.micro client --url URL --requests N --concurrency C
    python -m bench.micro client --url URL --requests N --concurrency C --httpx [--keepalive K]
    python -m bench.micro client --url URL --requests N --concurrency C --minimal

``store``: ``SQLiteStore.record_callback`` for N distinct stored jobs, C at a time, from an
event loop, as the callback receiver calls it (group commit on the store's thread), with no
HTTP at all.

``sql``: the same work on one thread without an event loop: the store's own
``_record_callback``, each in its own savepoint (the store's ``_attempt``), in groups of 64
per transaction as the store's thread commits them, on a connection the store's own
``_Worker._connect`` opened (its pragmas, its statement cache). The difference from
``store`` is what the loop, the queue and the hand-back of results cost.

``client``: N GETs, C at a time (the loop that verifies callbacks makes 32 at a time),
against a no-op server, through the service's own client: the ``aiohttp.ClientSession`` of
``service.http.new_session()``, each response read whole as ``service.upstream`` reads it.
``--httpx``: the same GETs through an ``httpx.AsyncClient`` with the pool settings the
service used before aiohttp (``max_connections=100``, ``max_keepalive_connections`` = K), for
comparison. ``--minimal``: the same GETs written and read on raw asyncio streams (no pool,
no parsing library): the floor.

Every mode with an event loop runs it on uvloop when it is installed, as the service does
(uvicorn picks it), else on asyncio's own loop. Each prints one JSON line: wall seconds,
process CPU seconds, operations/s, CPU µs per op, and the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

PAYLOAD = {"status": "completed", "data": {"image_url": "https://cdn.example.com/x.png"}}


def cpu() -> float:
    times = os.times()
    return times.user + times.system


def result(ops: int, wall: float, used: float) -> dict[str, Any]:
    return {
        "ops": ops,
        "wall": wall,
        "cpu": used,
        "ops_per_s": ops / wall,
        "cpu_us_per_op": used / ops * 1e6,
    }


def read_jobs(path: str, limit: int) -> list[list[str]]:
    with open(path) as f:
        return [line.split("\t") for line in f.read().splitlines() if line][:limit]


def run_loop(main: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Runs ``main`` on uvloop when it is installed (the service's loop), else on asyncio's."""
    try:
        import uvloop
    except ImportError:
        return {**asyncio.run(main), "loop": "asyncio"}
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return {**runner.run(main), "loop": "uvloop"}


async def timed(concurrency: int, worker: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """Wall and CPU seconds of ``concurrency`` copies of ``worker`` run together."""
    started, cpu0 = time.monotonic(), cpu()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started, cpu() - cpu0


# ---- the store -----------------------------------------------------------------------------


async def run_store(args: argparse.Namespace) -> dict[str, Any]:
    from service.sqlite_store import SQLiteStore

    jobs = read_jobs(args.jobs, args.ops)
    store = SQLiteStore(args.db)
    await store.open()
    queue = list(reversed(jobs))

    async def worker() -> None:
        while queue:
            job_id, task_id = queue.pop()
            now = time.time()
            await store.record_callback(
                job_id, task_id, "completed", {"task_id": task_id, **PAYLOAD}, now, now + 900
            )

    wall, used = await timed(args.concurrency, worker)
    await store.close()
    return result(len(jobs), wall, used)


def run_sql(args: argparse.Namespace) -> dict[str, Any]:
    """``_record_callback`` on one thread, groups of 64 in one transaction, no event loop."""
    from service.sqlite_store import _attempt, _connect, _record_callback

    jobs = read_jobs(args.jobs, args.ops)
    conn = _connect(args.db)
    started, cpu0 = time.monotonic(), cpu()
    for i in range(0, len(jobs), 64):
        conn.execute("BEGIN IMMEDIATE")
        for job_id, task_id in jobs[i : i + 64]:
            now = time.time()
            values = (job_id, task_id, "completed", {"task_id": task_id, **PAYLOAD}, now, now)
            _, error = _attempt(conn, _record_callback, values)
            if error:
                raise error
        conn.execute("COMMIT")
    wall, used = time.monotonic() - started, cpu() - cpu0
    conn.close()
    return {**result(len(jobs), wall, used), "loop": "none"}


# ---- the outgoing HTTP client ----------------------------------------------------------------


async def run_minimal_client(args: argparse.Namespace) -> dict[str, Any]:
    """The floor: HTTP/1.1 keep-alive GETs on raw asyncio streams, one connection per worker."""
    from urllib.parse import urlsplit

    url = urlsplit(args.url)
    request = (
        f"GET {url.path or '/'} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"User-Agent: bench\r\nAccept: */*\r\n\r\n"
    ).encode()
    remaining = args.requests

    async def worker() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        while remaining > 0:
            remaining -= 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head[:40])
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
        writer.close()

    wall, used = await timed(args.concurrency, worker)
    return result(args.requests, wall, used)


async def run_aiohttp_client(args: argparse.Namespace) -> dict[str, Any]:
    """The service's client: ``service.http.new_session()``, responses read as
    ``service.upstream.UpstreamClient`` reads them."""
    from service import http

    async with http.new_session() as session:

        async def get() -> None:
            async with session.get(args.url, allow_redirects=False) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}")

        for _ in range(50):  # warm-up
            await get()
        remaining = args.requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await get()

        wall, used = await timed(args.concurrency, worker)
    return result(args.requests, wall, used)


async def run_httpx_client(args: argparse.Namespace) -> dict[str, Any]:
    """For comparison: the client the service used before aiohttp."""
    import httpx

    limits = httpx.Limits(
        max_connections=args.max_connections, max_keepalive_connections=args.keepalive
    )
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        for _ in range(50):  # warm-up
            await client.get(args.url)
        remaining = args.requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                (await client.get(args.url)).raise_for_status()

        wall, used = await timed(args.concurrency, worker)
    return result(args.requests, wall, used)


def run_client(args: argparse.Namespace) -> dict[str, Any]:
    if args.minimal:
        return run_loop(run_minimal_client(args))
    if args.httpx:
        return run_loop(run_httpx_client(args))
    return run_loop(run_aiohttp_client(args))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    store = sub.add_parser("store")
    store.add_argument("--db", required=True)
    store.add_argument("--jobs", required=True, help="lines of job_id<TAB>task_id")
    store.add_argument("--ops", type=int, default=20000)
    store.add_argument("--concurrency", type=int, default=64)
    sql = sub.add_parser("sql")
    sql.add_argument("--db", required=True)
    sql.add_argument("--jobs", required=True, help="lines of job_id<TAB>task_id")
    sql.add_argument("--ops", type=int, default=8000)
    client = sub.add_parser("client")
    client.add_argument("--url", required=True)
    client.add_argument("--requests", type=int, default=3000)
    client.add_argument("--concurrency", type=int, default=32)
    kind = client.add_mutually_exclusive_group()
    kind.add_argument(
        "--httpx",
        action="store_true",
        help="an httpx.AsyncClient (the service's client before aiohttp) instead of the "
        "service's aiohttp session",
    )
    kind.add_argument(
        "--minimal",
        action="store_true",
        help="a minimal asyncio-streams client instead of the service's (the floor)",
    )
    client.add_argument("--keepalive", type=int, default=20, help="with --httpx")
    client.add_argument("--max-connections", type=int, default=100, help="with --httpx")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.kind == "sql":
        print(json.dumps(run_sql(args)))
    elif args.kind == "store":
        print(json.dumps(run_loop(run_store(args))))
    else:
        print(json.dumps(run_client(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
