"""The embedded SQLite backend: every SQL statement taskhook runs lives in this module.

One connection, owned by one thread. Callers enqueue operations; the thread runs every
operation waiting in the queue inside one transaction (each in its own savepoint, so one
failure does not undo the others) and commits once: *group commit*. With WAL and
``synchronous=FULL`` a commit survives a power cut, and a burst of callbacks shares one fsync.
"""

from __future__ import annotations

import asyncio
import fcntl
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import msgspec
from sqlite_utils import Database

from service.errors import BudgetExceeded, Conflict, NotFound
from service.store import (
    Event,
    Job,
    JobStatus,
    PlannedStep,
    Step,
    StepStatus,
    SubmitState,
)

T = TypeVar("T")
_MAX_BATCH = 512

# Forward-only migrations; PRAGMA user_version records how many have run.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        input TEXT NOT NULL,
        tags TEXT NOT NULL DEFAULT '[]',
        metadata TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL,
        upstream_task_id TEXT,
        parent_id TEXT REFERENCES jobs(id),
        depth INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL,
        output TEXT,
        outputs TEXT NOT NULL DEFAULT '[]',
        error TEXT,
        idempotency_key TEXT UNIQUE,
        request_hash TEXT,
        submit_state TEXT,
        submit_attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL
    );
    CREATE INDEX jobs_due ON jobs(status, next_attempt_at);
    CREATE INDEX jobs_parent ON jobs(parent_id);
    CREATE INDEX jobs_status_id ON jobs(status, id);
    CREATE INDEX jobs_model_id ON jobs(model, id);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs(id),
        source TEXT NOT NULL,
        task_id TEXT,
        status TEXT,
        payload TEXT NOT NULL,
        received_at REAL NOT NULL,
        duplicate INTEGER NOT NULL DEFAULT 0,
        verified INTEGER,
        processed_at REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        note TEXT
    );
    CREATE INDEX events_job ON events(job_id);
    CREATE INDEX events_pending ON events(next_attempt_at) WHERE processed_at IS NULL;
    CREATE TABLE steps (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs(id),
        rule TEXT NOT NULL,
        position INTEGER NOT NULL,
        handler TEXT NOT NULL,
        generation INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        result TEXT,
        next_run_at REAL NOT NULL,
        lease_until REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        first_attempt_at REAL,
        UNIQUE (job_id, rule, generation, position)
    );
    CREATE INDEX steps_due ON steps(status, next_run_at);
    CREATE INDEX steps_job ON steps(job_id);
    """,
    # 2: the dry-run price of a job, when it was priced (follow-ups under a budget are)
    """
    ALTER TABLE jobs ADD COLUMN cost REAL;
    """,
    # 3: retention prunes by end time
    """
    CREATE INDEX jobs_finished ON jobs(finished_at) WHERE finished_at IS NOT NULL;
    """,
]

_JSON_FIELDS = {
    "jobs": ("input", "tags", "metadata", "output", "outputs"),
    "events": ("payload",),
    "steps": ("result",),
}
_encode = msgspec.json.encode


def _decode_row(row: dict[str, Any], table: str) -> dict[str, Any]:
    for name in _JSON_FIELDS[table]:
        if row.get(name) is not None:
            row[name] = msgspec.json.decode(row[name])
    return row


def _job(row: dict[str, Any]) -> Job:
    return msgspec.convert(_decode_row(row, "jobs"), Job)


def _event(row: dict[str, Any]) -> Event:
    row = _decode_row(row, "events")
    row.pop("next_attempt_at", None)
    return msgspec.convert(row, Event, strict=False)


def _step(row: dict[str, Any]) -> Step:
    row = _decode_row(row, "steps")
    row.pop("lease_until", None)
    return msgspec.convert(row, Step)


class _Worker:
    """The thread that owns the connection and commits operations in groups."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="taskhook-sqlite", daemon=True)
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> None:
        self.thread.start()
        self.ready.wait()
        if self.error:
            raise self.error

    def _connect(self) -> Database:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        db = Database(conn)
        _migrate(db)
        return db

    def _run(self) -> None:
        try:
            db = self._connect()
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        while True:
            batch = [self.queue.get()]
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if any(item is None for item in batch):
                self._commit(db, [item for item in batch if item is not None])
                db.conn.close()
                return
            self._commit(db, batch)

    def _commit(self, db: Database, batch: list[Any]) -> None:
        outcomes: list[tuple[Any, Any, BaseException | None]] = []
        try:
            with db.atomic():
                for fn, args, future in batch:
                    outcomes.append((future, *_attempt(db, fn, args)))
        except BaseException as exc:  # the commit itself failed: nothing of the batch holds
            outcomes = [(future, None, exc) for _, _, future in batch]
        for future, result, error in outcomes:
            future.get_loop().call_soon_threadsafe(_settle, future, result, error)


def _attempt(db: Database, fn: Callable[..., Any], args: tuple) -> tuple[Any, Any]:
    try:
        with db.atomic():
            return fn(db, *args), None
    except Exception as exc:
        return None, exc


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _migrate(db: Database) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        with db.atomic():
            for statement in filter(str.strip, script.split(";")):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")


def _exclusive_lock(path: str) -> IO[bytes]:
    """One taskhook process per database: a second one would take over the first one's
    running steps at start-up. The OS releases the lock when the process dies."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    lock = open(f"{path}.lock", "wb")  # noqa: SIM115 (held open until close())
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise RuntimeError(f"another taskhook process is using {path}") from None
    return lock


class SQLiteStore:
    """``Store`` on one SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._worker: _Worker | None = None
        self._lock: IO[bytes] | None = None

    async def open(self) -> None:
        self._lock = _exclusive_lock(self.path)
        self._worker = _Worker(self.path)
        await asyncio.to_thread(self._worker.start)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.queue.put(None)
            await asyncio.to_thread(self._worker.thread.join, 10)
            self._worker = None
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._worker is None:
            raise RuntimeError("the store is not open")
        future = asyncio.get_running_loop().create_future()
        self._worker.queue.put((fn, args, future))
        return await future

    async def ping(self) -> bool:
        return await self._call(lambda db: db.execute("SELECT 1").fetchone()[0] == 1)

    # ---- jobs ----------------------------------------------------------------------------

    async def create_job(self, job: Job, max_chain_cost: float | None = None) -> tuple[Job, bool]:
        return await self._call(_create_job, job, max_chain_cost)

    async def get_job(self, job_id: str) -> Job | None:
        return await self._call(_get_job, job_id)

    async def job_by_key(self, idempotency_key: str) -> Job | None:
        sql = "SELECT * FROM jobs WHERE idempotency_key = ?"
        return await self._call(lambda db: next(map(_job, db.query(sql, [idempotency_key])), None))

    async def list_jobs(
        self,
        *,
        status: str | None,
        model: str | None,
        tag: str | None,
        limit: int,
        cursor: str | None,
    ) -> list[Job]:
        return await self._call(_list_jobs, status, model, tag, limit, cursor)

    async def children(self, job_id: str) -> list[str]:
        sql = "SELECT id FROM jobs WHERE parent_id = ? ORDER BY id"
        return await self._call(lambda db: [r[0] for r in db.execute(sql, [job_id])])

    async def chain_cost(self, job_id: str) -> float:
        """The priced cost of the whole chain the job belongs to (its root and descendants)."""
        return await self._call(_chain_cost, job_id)

    async def mark_submitted(self, job_id: str, task_id: str, poll_at: float) -> None:
        await self._call(_mark_submitted, job_id, task_id, poll_at)

    async def mark_rejected(self, job_id: str, error: str) -> None:
        await self._call(
            _set_job,
            job_id,
            "status = ?, error = ?, submit_state = NULL",
            [JobStatus.REJECTED, error],
        )

    async def schedule_submit(self, job_id: str, at: float, error: str | None) -> None:
        await self._call(
            _set_job,
            job_id,
            "submit_state = ?, next_attempt_at = ?, error = ?",
            [SubmitState.WAITING, at, error],
            "status = 'accepted'",
        )

    async def mark_ambiguous(self, job_id: str, error: str) -> None:
        await self._call(
            _set_job,
            job_id,
            "submit_state = ?, error = ?, next_attempt_at = NULL",
            [SubmitState.AMBIGUOUS, error],
            "status = 'accepted'",
        )

    async def adopt(self, job_id: str, task_id: str, poll_at: float) -> bool:
        return await self._call(lambda db: _adopt(db, job_id, task_id, poll_at) == 1)

    async def recover_inflight(self) -> int:
        """Jobs whose create request was in flight when the process stopped: the request may
        have reached the upstream, so they are ambiguous, never resent blindly."""
        return await self._call(
            _set_job_where,
            "submit_state = 'ambiguous', error = 'taskhook stopped while submitting; the "
            "upstream may have created the task (its callback will adopt it)'",
            "status = 'accepted' AND submit_state = 'inflight'",
        )

    async def claim_submissions(self, now: float, limit: int) -> list[Job]:
        return await self._call(_claim_submissions, now, limit)

    async def due_polls(self, now: float, limit: int) -> list[Job]:
        sql = (
            "SELECT * FROM jobs WHERE status = 'submitted' AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at LIMIT ?"
        )
        return await self._call(lambda db: [_job(r) for r in db.query(sql, [now, limit])])

    async def schedule_poll(self, job_id: str, at: float) -> None:
        await self._call(_set_job, job_id, "next_attempt_at = ?", [at], "status = 'submitted'")

    async def finish_job(
        self,
        job_id: str,
        *,
        status: str,
        output: dict[str, Any] | None,
        outputs: list[dict[str, Any]],
        error: str | None,
        steps: list[PlannedStep],
        now: float,
    ) -> bool:
        return await self._call(_finish_job, job_id, status, output, outputs, error, steps, now)

    # ---- events --------------------------------------------------------------------------

    async def record_callback(
        self,
        job_id: str,
        task_id: str | None,
        status: str,
        payload: dict[str, Any],
        now: float,
        poll_at: float,
    ) -> Event:
        return await self._call(_record_callback, job_id, task_id, status, payload, now, poll_at)

    async def record_poll(
        self, job_id: str, task_id: str, status: str, payload: dict[str, Any], now: float
    ) -> Event:
        return await self._call(
            _insert_event, job_id, "poll", task_id, status, payload, now, False, now
        )

    async def pending_events(self, now: float, limit: int) -> list[Event]:
        sql = (
            "SELECT * FROM events WHERE processed_at IS NULL AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at, id LIMIT ?"
        )
        return await self._call(lambda db: [_event(r) for r in db.query(sql, [now, limit])])

    async def finish_event(
        self, event_id: int, *, verified: bool | None, note: str | None, now: float
    ) -> None:
        sql = "UPDATE events SET processed_at = ?, verified = ?, note = ? WHERE id = ?"
        await self._call(lambda db: db.execute(sql, [now, verified, note, event_id]))

    async def retry_event(self, event_id: int, at: float, note: str) -> None:
        sql = (
            "UPDATE events SET attempts = attempts + 1, next_attempt_at = ?, note = ? WHERE id = ?"
        )
        await self._call(lambda db: db.execute(sql, [at, note, event_id]))

    async def job_events(self, job_id: str) -> list[Event]:
        sql = "SELECT * FROM events WHERE job_id = ? ORDER BY id"
        return await self._call(lambda db: [_event(r) for r in db.query(sql, [job_id])])

    # ---- steps ---------------------------------------------------------------------------

    async def claim_step(self, now: float, lease_until: float) -> Step | None:
        return await self._call(_claim_step, now, lease_until)

    async def prior_results(self, step: Step) -> dict[str, dict[str, Any]]:
        return await self._call(_prior_results, step)

    # A claim's attempt number is its lease token: a worker whose lease expired (and whose
    # step was claimed again) can no longer change the step ("AND attempts = ?" below).

    async def heartbeat(self, step: Step, lease_until: float) -> None:
        sql = (
            "UPDATE steps SET lease_until = ? WHERE id = ? AND status = 'running' AND attempts = ?"
        )
        await self._call(lambda db: db.execute(sql, [lease_until, step.id, step.attempts]))

    async def step_succeeded(self, step: Step, result: dict[str, Any], now: float) -> bool:
        sql = (
            "UPDATE steps SET status = 'succeeded', result = ?, last_error = NULL,"
            " lease_until = NULL, updated_at = ?"
            " WHERE id = ? AND status = 'running' AND attempts = ?"
        )
        values = [_encode(result), now, step.id, step.attempts]
        return await self._call(lambda db: db.execute(sql, values).rowcount == 1)

    async def step_failed(self, step: Step, error: str, retry_at: float | None, now: float) -> None:
        status = StepStatus.RETRYING if retry_at is not None else StepStatus.DEAD
        sql = (
            "UPDATE steps SET status = ?, last_error = ?,"
            " next_run_at = COALESCE(?, next_run_at), lease_until = NULL, updated_at = ?"
            " WHERE id = ? AND status = 'running' AND attempts = ?"
        )
        values = [status, error, retry_at, now, step.id, step.attempts]
        await self._call(lambda db: db.execute(sql, values))

    async def recover_steps(self, now: float, everything: bool = False) -> int:
        """Returns running steps whose lease expired (or all running steps) to the queue."""
        sql = (
            "UPDATE steps SET status = 'retrying', lease_until = NULL, next_run_at = ?,"
            " updated_at = ? WHERE status = 'running' AND (? OR lease_until < ?)"
        )
        return await self._call(lambda db: db.execute(sql, [now, now, everything, now]).rowcount)

    async def job_steps(self, job_id: str) -> list[Step]:
        sql = "SELECT * FROM steps WHERE job_id = ? ORDER BY generation, rule, position"
        return await self._call(lambda db: [_step(r) for r in db.query(sql, [job_id])])

    async def prune(self, before: float, limit: int) -> int:
        """Deletes up to ``limit`` jobs that ended before ``before`` and whose steps have all
        settled, with their events and steps. Returns how many jobs went."""
        return await self._call(_prune, before, limit)

    async def replay_candidates(
        self, *, step_status: str | None, since: float | None, limit: int
    ) -> list[str]:
        sql = """SELECT j.id FROM jobs j
                 WHERE j.status IN ('completed', 'failed')
                   AND (:step_status IS NULL OR EXISTS (
                        SELECT 1 FROM steps s WHERE s.job_id = j.id AND s.status = :step_status
                          AND (:since IS NULL OR s.updated_at >= :since)))
                   AND (:step_status IS NOT NULL OR :since IS NULL OR j.finished_at >= :since)
                 ORDER BY j.id LIMIT :limit"""
        params = {"step_status": step_status, "since": since, "limit": limit}
        return await self._call(lambda db: [r["id"] for r in db.query(sql, params)])

    async def release_step(self, step: Step, now: float) -> None:
        """Gives a running step back to the queue (shutdown): it runs again on the next start."""
        sql = (
            "UPDATE steps SET status = 'retrying', lease_until = NULL, next_run_at = ?,"
            " attempts = MAX(attempts - 1, 0), updated_at = ?"
            " WHERE id = ? AND status = 'running' AND attempts = ?"
        )
        await self._call(lambda db: db.execute(sql, [now, now, step.id, step.attempts]))

    async def replay(self, job_id: str, steps: list[PlannedStep], force: bool, now: float) -> int:
        return await self._call(_replay, job_id, steps, force, now)


# ---- operations, each run on the store's thread inside a savepoint ---------------------

_JOB_COLUMNS = [f for f in Job.__struct_fields__]


def _create_job(db: Database, job: Job, max_chain_cost: float | None) -> tuple[Job, bool]:
    if job.idempotency_key:
        row = next(
            db.query("SELECT * FROM jobs WHERE idempotency_key = ?", [job.idempotency_key]), None
        )
        if row is not None:
            return _job(row), False
    if max_chain_cost is not None and job.parent_id:
        # Checked and inserted in one transaction: sibling follow-ups cannot both slip in.
        spent = _chain_cost(db, job.parent_id)
        if spent + (job.cost or 0.0) > max_chain_cost:
            raise BudgetExceeded(
                f"budget: the chain has cost {spent:.4f} and this follow-up would add "
                f"{job.cost or 0.0:.4f}, over max_chain_cost {max_chain_cost:.4f}"
            )
    values = msgspec.structs.asdict(job)
    for name in _JSON_FIELDS["jobs"]:
        values[name] = None if values[name] is None else _encode(values[name])
    columns = ", ".join(_JOB_COLUMNS)
    marks = ", ".join(f":{c}" for c in _JOB_COLUMNS)
    db.execute(f"INSERT INTO jobs ({columns}) VALUES ({marks})", values)  # noqa: S608
    return job, True


def _get_job(db: Database, job_id: str) -> Job | None:
    row = next(db.query("SELECT * FROM jobs WHERE id = ?", [job_id]), None)
    return None if row is None else _job(row)


def _list_jobs(
    db: Database,
    status: str | None,
    model: str | None,
    tag: str | None,
    limit: int,
    cursor: str | None,
) -> list[Job]:
    sql = """SELECT * FROM jobs
             WHERE (:status IS NULL OR status = :status)
               AND (:model IS NULL OR model = :model)
               AND (:tag IS NULL OR EXISTS (SELECT 1 FROM json_each(jobs.tags)
                                            WHERE json_each.value = :tag))
               AND (:cursor IS NULL OR id < :cursor)
             ORDER BY id DESC LIMIT :limit"""
    params = {"status": status, "model": model, "tag": tag, "cursor": cursor, "limit": limit}
    return [_job(r) for r in db.query(sql, params)]


def _set_job(
    db: Database, job_id: str, assignments: str, values: list[Any], condition: str = "1"
) -> int:
    sql = f"UPDATE jobs SET {assignments}, updated_at = (julianday('now') - 2440587.5) * 86400.0 WHERE id = ? AND {condition}"  # noqa: S608, E501
    return db.execute(sql, [*values, job_id]).rowcount


def _chain_cost(db: Database, job_id: str) -> float:
    row = db.execute(
        """WITH RECURSIVE
             up(id, parent_id) AS (
               SELECT id, parent_id FROM jobs WHERE id = ?
               UNION ALL SELECT j.id, j.parent_id FROM jobs j JOIN up ON j.id = up.parent_id),
             down(id, cost) AS (
               SELECT id, cost FROM jobs WHERE id = (SELECT id FROM up WHERE parent_id IS NULL)
               UNION ALL SELECT j.id, j.cost FROM jobs j JOIN down ON j.parent_id = down.id)
           SELECT COALESCE(SUM(cost), 0) FROM down""",
        [job_id],
    ).fetchone()
    return float(row[0])


def _set_job_where(db: Database, assignments: str, condition: str) -> int:
    sql = f"UPDATE jobs SET {assignments} WHERE {condition}"  # noqa: S608
    return db.execute(sql).rowcount


def _mark_submitted(db: Database, job_id: str, task_id: str, poll_at: float) -> None:
    # A fast callback may have finished the job already: never move it back.
    db.execute(
        """UPDATE jobs SET upstream_task_id = COALESCE(upstream_task_id, ?),
               status = CASE WHEN status = 'accepted' THEN 'submitted' ELSE status END,
               submit_state = NULL,
               error = CASE WHEN status = 'accepted' THEN NULL ELSE error END,
               next_attempt_at = CASE WHEN status = 'accepted' THEN ? ELSE next_attempt_at END,
               updated_at = (julianday('now') - 2440587.5) * 86400.0
           WHERE id = ?""",
        [task_id, poll_at, job_id],
    )


def _claim_submissions(db: Database, now: float, limit: int) -> list[Job]:
    rows = db.query(
        """UPDATE jobs SET submit_state = 'inflight', submit_attempts = submit_attempts + 1
           WHERE id IN (SELECT id FROM jobs WHERE status = 'accepted'
                          AND submit_state = 'waiting' AND next_attempt_at <= ?
                        ORDER BY next_attempt_at LIMIT ?)
           RETURNING *""",
        [now, limit],
    )
    return [_job(r) for r in rows]


def _finish_job(
    db: Database,
    job_id: str,
    status: str,
    output: dict[str, Any] | None,
    outputs: list[dict[str, Any]],
    error: str | None,
    steps: list[PlannedStep],
    now: float,
) -> bool:
    changed = db.execute(
        """UPDATE jobs SET status = ?, output = ?, outputs = ?, error = ?, finished_at = ?,
               updated_at = ?, next_attempt_at = NULL, submit_state = NULL
           WHERE id = ? AND status IN ('accepted', 'submitted')""",
        [
            status,
            None if output is None else _encode(output),
            _encode(outputs),
            error,
            now,
            now,
            job_id,
        ],
    ).rowcount
    if changed:
        _insert_steps(db, job_id, steps, 0, now)
    return bool(changed)


def _insert_steps(
    db: Database, job_id: str, steps: list[PlannedStep], generation: int, now: float
) -> None:
    db.conn.executemany(
        """INSERT INTO steps (job_id, rule, position, handler, generation, status,
                              next_run_at, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)""",
        [(job_id, s.rule, s.position, s.handler, generation, now, now, now) for s in steps],
    )


def _record_callback(
    db: Database,
    job_id: str,
    task_id: str | None,
    status: str,
    payload: dict[str, Any],
    now: float,
    poll_at: float,
) -> Event:
    """Stores a callback; a repeat of a result already recorded is marked duplicate.

    Raises ``NotFound`` for an unknown job and ``Conflict`` for another task's callback."""
    job = db.execute("SELECT upstream_task_id FROM jobs WHERE id = ?", [job_id]).fetchone()
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    if job[0] and task_id and task_id != job[0]:
        raise Conflict(f"task_id {task_id!r} is not this job's task")
    if task_id and not job[0]:
        # The create answer never reached us (or has not yet): the callback tells the task,
        # and the job is the upstream's from now on (polled if nothing more comes).
        _adopt(db, job_id, task_id, poll_at)
    duplicate = db.execute(
        """SELECT EXISTS (SELECT 1 FROM events WHERE job_id = ? AND status = ?
                            AND (processed_at IS NULL OR verified = 1 OR source = 'poll'))
               OR EXISTS (SELECT 1 FROM jobs WHERE id = ? AND status = ?)""",
        [job_id, status, job_id, status],
    ).fetchone()[0]
    processed = now if duplicate else None
    return _insert_event(
        db, job_id, "callback", task_id, status, payload, now, bool(duplicate), processed
    )


def _adopt(db: Database, job_id: str, task_id: str, poll_at: float) -> int:
    """The job's task is ``task_id`` (told by a callback, or by an operator): the job is the
    upstream's from now on, and is polled at ``poll_at`` if nothing else comes."""
    return db.execute(
        """UPDATE jobs SET upstream_task_id = ?,
               status = CASE WHEN status = 'accepted' THEN 'submitted' ELSE status END,
               submit_state = NULL, next_attempt_at = CASE WHEN status = 'accepted'
                                                      THEN ? ELSE next_attempt_at END
           WHERE id = ? AND upstream_task_id IS NULL""",
        [task_id, poll_at, job_id],
    ).rowcount


def _insert_event(
    db: Database,
    job_id: str,
    source: str,
    task_id: str | None,
    status: str | None,
    payload: dict[str, Any],
    now: float,
    duplicate: bool,
    processed_at: float | None,
) -> Event:
    verified = True if source == "poll" else None
    row = next(
        db.query(
            """INSERT INTO events (job_id, source, task_id, status, payload, received_at,
                               duplicate, verified, processed_at, next_attempt_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *""",
            [
                job_id,
                source,
                task_id,
                status,
                _encode(payload),
                now,
                duplicate,
                verified,
                processed_at,
                now,
            ],
        )
    )
    return _event(row)


def _claim_step(db: Database, now: float, lease_until: float) -> Step | None:
    row = next(
        db.query(
            """UPDATE steps SET status = 'running', attempts = attempts + 1, lease_until = ?,
               updated_at = ?, first_attempt_at = COALESCE(first_attempt_at, ?)
           WHERE id = (
               SELECT s.id FROM steps s
               WHERE s.status IN ('pending', 'retrying') AND s.next_run_at <= ?
                 AND NOT EXISTS (
                     SELECT 1 FROM steps p
                     WHERE p.job_id = s.job_id AND p.rule = s.rule
                       AND p.generation = s.generation AND p.position < s.position
                       AND p.status != 'succeeded')
               ORDER BY s.next_run_at, s.id LIMIT 1)
           RETURNING *""",
            [lease_until, now, now, now],
        ),
        None,
    )
    return None if row is None else _step(row)


def _prior_results(db: Database, step: Step) -> dict[str, dict[str, Any]]:
    rows = db.query(
        """SELECT handler, result FROM steps WHERE job_id = ? AND rule = ? AND generation = ?
               AND position < ? AND status = 'succeeded' ORDER BY position""",
        [step.job_id, step.rule, step.generation, step.position],
    )
    return {r["handler"]: msgspec.json.decode(r["result"] or b"{}") for r in rows}


def _prune(db: Database, before: float, limit: int) -> int:
    ids = [
        r[0]
        for r in db.execute(
            """SELECT id FROM jobs j
           WHERE j.status IN ('completed', 'failed', 'rejected')
             AND COALESCE(j.finished_at, j.updated_at) < ?
             AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.job_id = j.id
                               AND s.status NOT IN ('succeeded', 'dead'))
           LIMIT ?""",
            [before, limit],
        )
    ]
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    for sql in (
        f"UPDATE jobs SET parent_id = NULL WHERE parent_id IN ({marks})",  # noqa: S608
        f"DELETE FROM events WHERE job_id IN ({marks})",  # noqa: S608
        f"DELETE FROM steps WHERE job_id IN ({marks})",  # noqa: S608
        f"DELETE FROM jobs WHERE id IN ({marks})",  # noqa: S608
    ):
        db.execute(sql, ids)
    return len(ids)


def _replay(db: Database, job_id: str, steps: list[PlannedStep], force: bool, now: float) -> int:
    """Revives unfinished steps; adds rules that now match; with ``force`` reruns all."""
    if force:
        generation = db.execute(
            "SELECT COALESCE(MAX(generation), -1) + 1 FROM steps WHERE job_id = ?", [job_id]
        ).fetchone()[0]
        _insert_steps(db, job_id, steps, generation, now)
        return len(steps)
    revived = db.execute(
        """UPDATE steps SET status = 'pending', attempts = 0, next_run_at = ?, updated_at = ?,
               first_attempt_at = NULL
           WHERE job_id = ? AND status IN ('dead', 'retrying')""",
        [now, now, job_id],
    ).rowcount
    existing = {
        r[0] for r in db.execute("SELECT DISTINCT rule FROM steps WHERE job_id = ?", [job_id])
    }
    fresh = [s for s in steps if s.rule not in existing]
    generation = db.execute(
        "SELECT COALESCE(MAX(generation), 0) FROM steps WHERE job_id = ?", [job_id]
    ).fetchone()[0]
    _insert_steps(db, job_id, fresh, generation, now)
    return revived + len(fresh)
