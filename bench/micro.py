"""Micro-benchmarks of two costs the profiles point at, each in a process of its own.

    python -m bench.micro store  --db FILE --jobs FILE --ops N --concurrency C
                                 [--fixed-savepoints] [--batched-settle]
    python -m bench.micro sql    --db FILE --jobs FILE --ops N [--plain]
    python -m bench.micro client --url URL --requests N --concurrency C --keepalive K
    python -m bench.micro client --url URL --requests N --concurrency C --minimal

``store``: ``SQLiteStore.record_callback`` for N distinct stored jobs, C at a time, from an
asyncio loop, as the callback receiver calls it (group commit on the store's thread), with
no HTTP at all. ``--fixed-savepoints`` gives sqlite_utils' ``Database.atomic`` a constant
savepoint name instead of ``secrets.token_hex(16)``: a random name makes every SAVEPOINT and
RELEASE a new SQL text, which costs an ``os.urandom`` call, a statement compilation, and
evicts the statements the store runs from sqlite3's statement cache (128 entries).
``--batched-settle`` hands each group's results to the loop with one
``call_soon_threadsafe`` instead of one per operation (each is a write to the loop's
self-pipe).

``sql``: the same work on one thread without asyncio, in groups of 64: the store's own
``_record_callback`` through sqlite_utils, or the same statements on plain sqlite3.

``client``: N GETs through an ``httpx.AsyncClient`` with the service's pool settings
(``max_connections=100``, ``max_keepalive_connections`` = K), C at a time, as the loop that
verifies callbacks makes them (32 at a time), against a no-op server; ``--minimal``: the
same GETs written and read on raw asyncio streams (no pool, no parsing library): the floor.

Each prints one JSON line: wall seconds, process CPU seconds, operations/s, CPU µs per op.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any


def cpu() -> float:
    times = os.times()
    return times.user + times.system


def batched_settle() -> None:
    """What-if: the store thread hands a group's results to the loop with one
    ``call_soon_threadsafe`` (one self-pipe write) instead of one per operation."""
    from service import sqlite_store

    def settle_all(items: list[tuple[Any, Any, Any]]) -> None:
        for future, result, error in items:
            sqlite_store._settle(future, result, error)

    def commit(self: Any, db: Any, batch: list[Any]) -> None:
        outcomes: list[tuple[Any, Any, Any]] = []
        try:
            with db.atomic():
                for fn, fn_args, future in batch:
                    outcomes.append((future, *sqlite_store._attempt(db, fn, fn_args)))
        except BaseException as exc:
            outcomes = [(future, None, exc) for _, _, future in batch]
        by_loop: dict[Any, list[tuple[Any, Any, Any]]] = {}
        for item in outcomes:
            by_loop.setdefault(item[0].get_loop(), []).append(item)
        for loop, items in by_loop.items():
            loop.call_soon_threadsafe(settle_all, items)

    sqlite_store._Worker._commit = commit  # type: ignore[method-assign]


async def run_store(args: argparse.Namespace) -> dict[str, Any]:
    if args.batched_settle:
        batched_settle()
    if args.fixed_savepoints:
        import types

        import sqlite_utils.db

        sqlite_utils.db.secrets = types.SimpleNamespace(  # type: ignore[attr-defined]
            token_hex=lambda n: "s" * (2 * n)
        )
    from service.sqlite_store import SQLiteStore

    with open(args.jobs) as f:
        jobs = [line.split("\t") for line in f.read().splitlines() if line]
    jobs = jobs[: args.ops]
    store = SQLiteStore(args.db)
    await store.open()
    queue = list(reversed(jobs))
    payload = {"status": "completed", "data": {"image_url": "https://cdn.example.com/x.png"}}

    async def worker() -> None:
        while queue:
            job_id, task_id = queue.pop()
            now = time.time()
            await store.record_callback(
                job_id, task_id, "completed", {"task_id": task_id, **payload}, now, now + 900
            )

    started, cpu0 = time.monotonic(), cpu()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    wall, used = time.monotonic() - started, cpu() - cpu0
    await store.close()
    return {
        "ops": len(jobs),
        "wall": wall,
        "cpu": used,
        "ops_per_s": len(jobs) / wall,
        "cpu_us_per_op": used / len(jobs) * 1e6,
    }


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

    started, cpu0 = time.monotonic(), cpu()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    wall, used = time.monotonic() - started, cpu() - cpu0
    return {
        "ops": args.requests,
        "wall": wall,
        "cpu": used,
        "ops_per_s": args.requests / wall,
        "cpu_us_per_op": used / args.requests * 1e6,
    }


async def run_client(args: argparse.Namespace) -> dict[str, Any]:
    if args.minimal:
        return await run_minimal_client(args)
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

        started, cpu0 = time.monotonic(), cpu()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        wall, used = time.monotonic() - started, cpu() - cpu0
    return {
        "ops": args.requests,
        "wall": wall,
        "cpu": used,
        "ops_per_s": args.requests / wall,
        "cpu_us_per_op": used / args.requests * 1e6,
    }


def run_sql(args: argparse.Namespace) -> dict[str, Any]:
    """record_callback's work on one thread, in groups of 64 in one transaction, no asyncio:
    the store's own function (sqlite_utils, a savepoint with a random name, RETURNING * into
    an Event) or, with ``--plain``, the same statements on plain sqlite3 (cached statements,
    one savepoint name, the inserted row's id only)."""
    import sqlite3

    import msgspec
    from service.sqlite_store import _attempt, _record_callback
    from sqlite_utils import Database

    with open(args.jobs) as f:
        jobs = [line.split("\t") for line in f.read().splitlines() if line][: args.ops]
    conn = sqlite3.connect(args.db, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
        conn.execute(f"PRAGMA {pragma}")
    db = Database(conn)
    payload = {"status": "completed", "data": {"image_url": "https://cdn.example.com/x.png"}}
    duplicate_sql = """SELECT EXISTS (SELECT 1 FROM events WHERE job_id = ? AND status = ?
                         AND (processed_at IS NULL OR verified = 1 OR source = 'poll'))
                       OR EXISTS (SELECT 1 FROM jobs WHERE id = ? AND status = ?)"""
    insert_sql = """INSERT INTO events (job_id, source, task_id, status, payload, received_at,
                    duplicate, verified, processed_at, next_attempt_at)
                    VALUES (?, 'callback', ?, ?, ?, ?, ?, NULL, NULL, ?) RETURNING id"""

    def store_op(job_id: str, task_id: str) -> None:
        now = time.time()
        _, error = _attempt(
            db,
            _record_callback,
            (job_id, task_id, "completed", {"task_id": task_id, **payload}, now, now),
        )
        if error:
            raise error

    def plain_op(job_id: str, task_id: str) -> None:
        now = time.time()
        conn.execute("SAVEPOINT op")
        conn.execute("SELECT upstream_task_id FROM jobs WHERE id = ?", (job_id,)).fetchone()
        dup = conn.execute(duplicate_sql, (job_id, "completed", job_id, "completed")).fetchone()
        body = msgspec.json.encode({"task_id": task_id, **payload})
        conn.execute(insert_sql, (job_id, task_id, "completed", body, now, dup[0], now)).fetchone()
        conn.execute("RELEASE op")

    op = plain_op if args.plain else store_op
    started, cpu0 = time.monotonic(), cpu()
    for i in range(0, len(jobs), 64):
        with db.atomic():
            for job_id, task_id in jobs[i : i + 64]:
                op(job_id, task_id)
    wall, used = time.monotonic() - started, cpu() - cpu0
    return {
        "ops": len(jobs),
        "wall": wall,
        "cpu": used,
        "ops_per_s": len(jobs) / wall,
        "cpu_us_per_op": used / len(jobs) * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    store = sub.add_parser("store")
    store.add_argument("--db", required=True)
    store.add_argument("--jobs", required=True, help="lines of job_id<TAB>task_id")
    store.add_argument("--ops", type=int, default=20000)
    store.add_argument("--concurrency", type=int, default=64)
    store.add_argument("--fixed-savepoints", action="store_true")
    store.add_argument("--batched-settle", action="store_true")
    sql = sub.add_parser("sql")
    sql.add_argument("--db", required=True)
    sql.add_argument("--jobs", required=True, help="lines of job_id<TAB>task_id")
    sql.add_argument("--ops", type=int, default=8000)
    sql.add_argument("--plain", action="store_true")
    client = sub.add_parser("client")
    client.add_argument("--url", required=True)
    client.add_argument("--requests", type=int, default=3000)
    client.add_argument("--concurrency", type=int, default=32)
    client.add_argument("--keepalive", type=int, default=20)
    client.add_argument("--max-connections", type=int, default=100)
    client.add_argument(
        "--minimal",
        action="store_true",
        help="a minimal asyncio-streams client instead of httpx (the floor)",
    )
    args = parser.parse_args(argv)
    if args.kind == "sql":
        print(json.dumps(run_sql(args)))
        return 0
    runner = run_store if args.kind == "store" else run_client
    print(json.dumps(asyncio.run(runner(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
