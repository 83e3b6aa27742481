"""The SQLite store's fast path keeps its guarantees: group commit isolates the operations of a
group from each other, and the tag filter (an index table since migration 4) returns the jobs
the old ``json_each`` scan returned, on a new database and on one migrated from version 3.

Real SQLite files in ``tmp_path``, through the ``SQLiteStore`` API."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest

from service import sqlite_store
from service.errors import NotFound
from service.sqlite_store import MIGRATIONS, SQLiteStore
from service.store import Job

NOW = 1_700_000_000.0

# What GET /v1/jobs?tag= ran before migration 4: every job's tags read with json_each.
OLD_TAG_QUERY = """SELECT id FROM jobs
    WHERE (:status IS NULL OR status = :status)
      AND (:model IS NULL OR model = :model)
      AND EXISTS (SELECT 1 FROM json_each(jobs.tags) WHERE json_each.value = :tag)
      AND (:cursor IS NULL OR id < :cursor)
    ORDER BY id DESC LIMIT :limit"""


def make_job(number: int, tags: list[str], **fields: Any) -> Job:
    values: dict[str, Any] = {
        "id": f"job_{number:04d}",
        "model": "model/a" if number % 3 else "model/b",
        "input": {"prompt": f"p{number}"},
        "tags": tags,
        "status": "submitted",
        "upstream_task_id": f"task_{number:04d}",
        "created_at": NOW + number,
        "updated_at": NOW + number,
    }
    values.update(fields)
    return Job(**values)


def tags_for(number: int) -> list[str]:
    tags = []
    if number % 2 == 0:
        tags.append("even")
    if number % 7 == 0:
        tags.append("rare")
    if number % 5 == 0:
        tags += ["five", "five"]  # a repeated tag is one match, not two
    return tags


def rows(path: Path, sql: str, params: Any = ()) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, params).fetchall()


def old_filter(path: Path, tag: str, **params: Any) -> list[str]:
    values = {"status": None, "model": None, "cursor": None, "limit": 1000, "tag": tag}
    values.update(params)
    return [r[0] for r in rows(path, OLD_TAG_QUERY, values)]


async def list_ids(store: SQLiteStore, **params: Any) -> list[str]:
    values: dict[str, Any] = {"status": None, "model": None, "tag": None, "limit": 1000}
    values.update(params)
    values.setdefault("cursor", None)
    return [job.id for job in await store.list_jobs(**values)]


# ---- group commit ------------------------------------------------------------------------


def blocked_group(
    store: SQLiteStore,
) -> tuple[threading.Event, asyncio.Future, threading.Event]:
    """Occupies the store's thread until the returned event is set, so that everything
    enqueued meanwhile is committed as one group."""
    release, started = threading.Event(), threading.Event()

    def hold(conn: Any) -> None:
        started.set()
        release.wait(10)

    blocker = asyncio.ensure_future(store._call(hold))
    return release, blocker, started


@pytest.fixture
def group_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    original = sqlite_store._Connection._start_group

    def spy(self: Any, batch: list[Any]) -> None:
        sizes.append(len(batch))
        original(self, batch)

    monkeypatch.setattr(sqlite_store._Connection, "_start_group", spy)
    return sizes


def test_one_failing_operation_does_not_undo_the_rest_of_its_group(
    tmp_path: Path, group_sizes: list[int]
) -> None:
    path = tmp_path / "taskhook.db"

    def write_then_fail(conn: Any) -> None:
        conn.execute("UPDATE jobs SET error = 'half-done' WHERE id = 'job_0002'")
        raise RuntimeError("the operation failed after writing")

    async def main() -> list[Any]:
        store = SQLiteStore(str(path))
        await store.open()
        try:
            for number in (1, 2, 3):
                await store.create_job(make_job(number, ["t"]))
            release, blocker, started = blocked_group(store)
            await asyncio.to_thread(started.wait, 10)
            calls = [
                store.record_callback("job_0001", "task_0001", "completed", {"n": 1}, NOW, NOW),
                store.record_callback("job_nope", None, "completed", {"n": 0}, NOW, NOW),
                store._call(write_then_fail),
                store.record_callback("job_0003", "task_0003", "completed", {"n": 3}, NOW, NOW),
                store.get_job("job_0002"),
            ]
            tasks = [asyncio.ensure_future(c) for c in calls]
            await asyncio.sleep(0.05)  # every call is in the queue behind the blocker
            release.set()
            await blocker
            return await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await store.close()

    first, missing, failed, third, job_2 = asyncio.run(main())
    assert 5 in group_sizes, group_sizes  # the five calls were committed as one group
    assert isinstance(missing, NotFound)
    assert isinstance(failed, RuntimeError)
    assert first.job_id == "job_0001" and not first.duplicate and first.id > 0
    assert third.job_id == "job_0003" and third.payload == {"n": 3} and third.id > first.id
    assert job_2.error is None  # the failed operation's write was undone...
    # ...and only it: the others are committed, in the file, after close.
    assert rows(path, "SELECT id, job_id, source, status, payload FROM events ORDER BY id") == [
        (first.id, "job_0001", "callback", "completed", b'{"n":1}'),
        (third.id, "job_0003", "callback", "completed", b'{"n":3}'),
    ]
    assert rows(path, "SELECT count(*) FROM jobs WHERE error IS NOT NULL") == [(0,)]


def test_an_error_that_ends_the_transaction_fails_the_whole_group(
    tmp_path: Path, group_sizes: list[int]
) -> None:
    """A RAISE(ROLLBACK) (or a disk error) ends the transaction, savepoints and all: the
    operations before it in the group are gone too, so none of them may report success,
    and the ones after it must not run outside the transaction."""
    path = tmp_path / "taskhook.db"

    def end_the_transaction(conn: Any) -> None:
        conn.execute("CREATE TEMP TABLE boom (x)")
        conn.execute(
            "CREATE TEMP TRIGGER boom_t BEFORE INSERT ON boom"
            " BEGIN SELECT RAISE(ROLLBACK, 'boom'); END"
        )
        conn.execute("INSERT INTO boom VALUES (1)")

    async def main() -> tuple[list[Any], list[Any]]:
        store = SQLiteStore(str(path))
        await store.open()
        try:
            for number in (1, 2):
                await store.create_job(make_job(number, []))
            release, blocker, started = blocked_group(store)
            await asyncio.to_thread(started.wait, 10)
            calls = [
                store.record_callback("job_0001", "task_0001", "completed", {}, NOW, NOW),
                store._call(end_the_transaction),
                store.record_callback("job_0002", "task_0002", "completed", {}, NOW, NOW),
            ]
            tasks = [asyncio.ensure_future(c) for c in calls]
            await asyncio.sleep(0.05)
            release.set()
            await blocker
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            # the store goes on working afterwards
            after = await store.record_callback("job_0002", "task_0002", "completed", {}, NOW, NOW)
            return outcomes, [after]
        finally:
            await store.close()

    outcomes, (after,) = asyncio.run(main())
    assert 3 in group_sizes, group_sizes
    assert all(isinstance(o, sqlite3.IntegrityError) for o in outcomes), outcomes
    assert rows(path, "SELECT id, job_id FROM events") == [(after.id, "job_0002")]


# ---- the tag filter ----------------------------------------------------------------------


def test_tag_filter_matches_the_old_scan_with_filters_and_cursor(tmp_path: Path) -> None:
    path = tmp_path / "taskhook.db"

    async def main() -> dict[str, Any]:
        store = SQLiteStore(str(path))
        await store.open()
        try:
            for number in range(1, 61):
                status = "completed" if number % 4 == 0 else "submitted"
                await store.create_job(make_job(number, tags_for(number), status=status))
            seen: dict[str, Any] = {}
            for tag in ("even", "rare", "five", "none", ""):
                seen[tag] = await list_ids(store, tag=tag)
                seen[tag, "completed"] = await list_ids(store, tag=tag, status="completed")
                seen[tag, "model/b"] = await list_ids(store, tag=tag, model="model/b")
                seen[tag, "cursor"] = await list_ids(store, tag=tag, cursor="job_0030", limit=4)
            pages, cursor = [], None
            while True:  # paging as the API does: limit + 1, the last id is the cursor
                page = await list_ids(store, tag="even", limit=8, cursor=cursor)
                pages.append(page[:7])
                if len(page) <= 7:
                    break
                cursor = page[6]
            seen["pages"] = pages
            return seen
        finally:
            await store.close()

    seen = asyncio.run(main())
    assert seen["rare"] == [f"job_{n:04d}" for n in (56, 49, 42, 35, 28, 21, 14, 7)]
    assert seen["five"] == [f"job_{n:04d}" for n in range(60, 0, -5)]  # each job once
    assert seen["none"] == [] and seen[""] == []
    assert seen["even", "cursor"] == ["job_0028", "job_0026", "job_0024", "job_0022"]
    assert [i for page in seen["pages"] for i in page] == seen["even"]
    assert len(seen["even"]) == 30
    for tag in ("even", "rare", "five", "none", ""):
        assert seen[tag] == old_filter(path, tag)
        assert seen[tag, "completed"] == old_filter(path, tag, status="completed")
        assert seen[tag, "model/b"] == old_filter(path, tag, model="model/b")
        assert seen[tag, "cursor"] == old_filter(path, tag, cursor="job_0030", limit=4)
    assert seen["rare", "completed"] == ["job_0056", "job_0028"]


def make_version_3(path: Path, jobs: list[Job]) -> None:
    """A database as taskhook left it before migration 4, with jobs in it."""
    columns = list(Job.__struct_fields__)
    json_fields = set(sqlite_store._JSON_FIELDS["jobs"])
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN")
        for script in MIGRATIONS[:3]:
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 3")
        for job in jobs:
            values = msgspec.structs.asdict(job)
            row = [
                msgspec.json.encode(values[c]) if c in json_fields else values[c] for c in columns
            ]
            marks = ", ".join("?" * len(columns))
            conn.execute(f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({marks})", row)
        # a row written as TEXT rather than a BLOB reads the same
        conn.execute("UPDATE jobs SET tags = CAST(tags AS TEXT) WHERE id = 'job_0014'")
        conn.execute("COMMIT")


def test_tag_filter_on_a_database_migrated_from_version_3(tmp_path: Path) -> None:
    path = tmp_path / "taskhook.db"
    finished = {14: "completed", 20: "failed"}
    jobs = [
        make_job(
            n,
            tags_for(n),
            status=finished.get(n, "submitted"),
            finished_at=NOW if n in finished else None,
        )
        for n in range(1, 41)
    ]
    make_version_3(path, jobs)
    before = {tag: old_filter(path, tag) for tag in ("even", "rare", "five", "none")}
    assert before["rare"] == ["job_0035", "job_0028", "job_0021", "job_0014", "job_0007"]

    async def main() -> dict[str, Any]:
        store = SQLiteStore(str(path))
        await store.open()
        try:
            seen: dict[str, Any] = {tag: await list_ids(store, tag=tag) for tag in before}
            seen["rare", "cursor"] = await list_ids(store, tag="rare", cursor="job_0028")
            await store.create_job(make_job(41, ["rare", "new"]))
            seen["after create"] = await list_ids(store, tag="rare")
            seen["new"] = await list_ids(store, tag="new")
            seen["pruned"] = await store.prune(NOW + 1, 100)
            seen["after prune"] = await list_ids(store, tag="rare")
            seen["five after prune"] = await list_ids(store, tag="five")
            return seen
        finally:
            await store.close()

    seen = asyncio.run(main())
    for tag, ids in before.items():
        assert seen[tag] == ids
    assert seen["rare", "cursor"] == ["job_0021", "job_0014", "job_0007"]
    assert seen["after create"] == ["job_0041", *before["rare"]]
    assert seen["new"] == ["job_0041"]
    assert seen["pruned"] == 2  # job_0014 and job_0020, tags and all
    assert seen["after prune"] == ["job_0041", "job_0035", "job_0028", "job_0021", "job_0007"]
    assert "job_0020" not in seen["five after prune"] and "job_0015" in seen["five after prune"]
    assert rows(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    tagged = rows(path, "SELECT tag, job_id FROM job_tags ORDER BY job_id, tag")
    expected = sorted(
        {(t, f"job_{n:04d}") for n in range(1, 41) if n not in finished for t in tags_for(n)}
        | {("rare", "job_0041"), ("new", "job_0041")},
        key=lambda pair: (pair[1], pair[0]),
    )
    assert tagged == expected
    assert seen["after prune"] == old_filter(path, "rare")
