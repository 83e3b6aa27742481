"""The embedded SQLite backend: every SQL statement taskhook runs lives in this module.

One connection. Callers submit operations; the operations waiting together run inside one
transaction (each in its own savepoint, so one failure does not undo the others) and commit
once: *group commit* (``_Connection``: short groups run their statements on the event loop
and their COMMIT on the store's thread, other groups wholly on that thread). With WAL and
``synchronous=FULL`` a commit survives a power cut, and a burst of callbacks shares one fsync.

The statements run on the plain ``sqlite3`` connection, each SQL text a constant so that
sqlite3's statement cache compiles it once; the savepoint around each operation has a constant
name for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, TypeVar

import msgspec

from service.errors import BudgetExceeded, Conflict, NotFound
from service.store import (
    Claimed,
    Event,
    Job,
    JobDetail,
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
    # 4: the tag filter reads an index, not every job's tags (jobs are never re-tagged)
    """
    CREATE TABLE job_tags (
        tag TEXT NOT NULL,
        job_id TEXT NOT NULL REFERENCES jobs(id),
        PRIMARY KEY (tag, job_id)
    ) WITHOUT ROWID;
    CREATE INDEX job_tags_job ON job_tags(job_id);
    INSERT INTO job_tags (tag, job_id)
        SELECT DISTINCT json_each.value, jobs.id FROM jobs, json_each(CAST(jobs.tags AS TEXT))
        WHERE json_each.type = 'text';
    """,
]

_JSON_FIELDS = {
    "jobs": ("input", "tags", "metadata", "output", "outputs"),
    "events": ("payload",),
    "steps": ("result",),
}
_encode = msgspec.json.encode
_decode = msgspec.json.decode

# The columns read back, in the order of the records' fields (every field is a column).
_JOB_COLUMNS = list(Job.__struct_fields__)
_EVENT_COLUMNS = list(Event.__struct_fields__)
_STEP_COLUMNS = list(Step.__struct_fields__)
_JOB_FIELDS = ", ".join(_JOB_COLUMNS)
_EVENT_FIELDS = ", ".join(_EVENT_COLUMNS)
_STEP_FIELDS = ", ".join(_STEP_COLUMNS)
_JOB_JSON = tuple(i for i, name in enumerate(_JOB_COLUMNS) if name in _JSON_FIELDS["jobs"])


def _record(columns: list[str], row: Sequence[Any], table: str) -> dict[str, Any]:
    values = dict(zip(columns, row, strict=True))
    for name in _JSON_FIELDS[table]:
        if values[name] is not None:
            values[name] = _decode(values[name])
    return values


def _job(row: Sequence[Any]) -> Job:
    return msgspec.convert(_record(_JOB_COLUMNS, row, "jobs"), Job)


def _event(row: Sequence[Any]) -> Event:
    return msgspec.convert(_record(_EVENT_COLUMNS, row, "events"), Event, strict=False)


def _step(row: Sequence[Any]) -> Step:
    return msgspec.convert(_record(_STEP_COLUMNS, row, "steps"), Step)


def _connect(path: str) -> sqlite3.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, cached_statements=256
    )
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


class _Connection:
    """Owns the connection and runs operations in groups: the operations submitted while the
    previous group was running (or in one turn of the event loop) share one transaction,
    each in its own savepoint, and one commit (*group commit*).

    A group made only of quick operations (``quick``: a few indexed statements) runs its
    statements on the event loop's thread and hands only the COMMIT, whose fsync releases the
    GIL, to the store's thread: one hand-over per group instead of one per statement (each
    sqlite3 call releases the GIL, and winning it back from a busy event loop is what bounded
    callback ingest). A group with any other operation runs wholly on the store's thread.
    The connection is used by one side at a time: a new group starts after the last one's
    commit."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="taskhook-sqlite")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pending: list[tuple[Callable[..., Any], tuple, asyncio.Future]] = []
        self.busy = False  # a group is running or committing
        self.scheduled = False
        self.idle = asyncio.Event()

    async def open(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.idle = asyncio.Event()
        self.idle.set()
        self.conn = await self.loop.run_in_executor(self.executor, _connect, self.path)

    async def close(self) -> None:
        while self.busy or self.pending:
            self.idle.clear()
            await self.idle.wait()
        if self.conn is not None and self.loop is not None:
            await self.loop.run_in_executor(self.executor, self.conn.close)
        self.conn = None
        self.executor.shutdown(wait=True)

    def submit(self, fn: Callable[..., Any], args: tuple, future: asyncio.Future) -> None:
        self.pending.append((fn, args, future))
        self._schedule()

    def _schedule(self) -> None:
        if self.pending and not self.busy and not self.scheduled and self.loop is not None:
            self.scheduled = True
            self.loop.call_soon(self._next_group)

    def _next_group(self) -> None:
        self.scheduled = False
        if self.busy or not self.pending:
            return
        batch, self.pending = self.pending[:_MAX_BATCH], self.pending[_MAX_BATCH:]
        self.busy = True
        self._start_group(batch)

    def _start_group(self, batch: list[tuple[Callable[..., Any], tuple, asyncio.Future]]) -> None:
        assert self.conn is not None and self.loop is not None
        conn = self.conn
        if all(getattr(fn, "quick", False) for fn, _, _ in batch):
            try:
                outcomes = _execute(conn, batch)
            except BaseException as exc:  # BEGIN failed: nothing ran
                outcomes = _failed(batch, exc)
            work = functools.partial(_commit, conn, outcomes)
        else:
            work = functools.partial(_run_group, conn, batch)
        self.loop.run_in_executor(self.executor, work).add_done_callback(self._group_done)

    def _group_done(self, done: asyncio.Future) -> None:
        self.busy = False
        _settle_all(done.result())  # the group functions return outcomes, never raise
        if not self.pending:
            self.idle.set()
        self._schedule()


Outcomes = list[tuple[asyncio.Future, Any, BaseException | None]]


def _execute(conn: sqlite3.Connection, batch: list[Any]) -> Outcomes:
    """BEGIN (its failure raises) and every operation of the group, each in its own
    savepoint (or none, for an operation of one write); if an operation ended the
    transaction, every operation of the group fails with its error."""
    conn.execute("BEGIN IMMEDIATE")
    outcomes: Outcomes = []
    try:
        for fn, args, future in batch:
            outcomes.append((future, *_attempt(conn, fn, args)))
    except BaseException as exc:  # the transaction ended: nothing of the group holds
        _rollback(conn)
        return _failed(batch, exc)
    return outcomes


def _failed(batch: list[Any], exc: BaseException) -> Outcomes:
    """Every operation of the group fails with ``exc``."""
    return [(future, None, exc) for _, _, future in batch]


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):  # the commit's own error is the one to report
            conn.execute("ROLLBACK")


def _commit(conn: sqlite3.Connection, outcomes: Outcomes) -> Outcomes:
    """COMMIT (the fsync); if it fails, nothing of the group holds."""
    if not conn.in_transaction:  # an operation's failure already rolled it back
        return outcomes
    try:
        conn.execute("COMMIT")
    except BaseException as exc:
        _rollback(conn)
        return [(future, None, exc) for future, _, _ in outcomes]
    return outcomes


def _run_group(conn: sqlite3.Connection, batch: list[Any]) -> Outcomes:
    """The whole group on the store's thread."""
    try:
        return _commit(conn, _execute(conn, batch))
    except BaseException as exc:
        _rollback(conn)
        return _failed(batch, exc)


def quick(fn: Callable[..., T]) -> Callable[..., T]:
    """Marks an operation short enough to run its statements on the event loop's thread (a
    few indexed statements; never a scan, a loop over many rows or a wait)."""
    fn.quick = True  # type: ignore[attr-defined]
    return fn


def one_write(fn: Callable[..., T]) -> Callable[..., T]:
    """Marks an operation that writes with at most one statement: SQLite undoes a failed
    statement by itself, so the operation needs no savepoint (two statements fewer, and on
    the hot path every statement is a round trip for the GIL)."""
    fn.one_write = True  # type: ignore[attr-defined]
    return fn


def _attempt(conn: sqlite3.Connection, fn: Callable[..., Any], args: tuple) -> tuple[Any, Any]:
    """Runs one operation in its own savepoint: its failure undoes its writes only."""
    if getattr(fn, "one_write", False):
        try:
            return fn(conn, *args), None
        except Exception as exc:
            if not conn.in_transaction:
                raise
            return None, exc
    conn.execute("SAVEPOINT op")
    try:
        result = fn(conn, *args)
    except Exception as exc:
        if not conn.in_transaction:
            # The error ended the whole transaction (a disk error, a RAISE(ROLLBACK)): the
            # group's earlier operations are undone too, so the group fails as a whole.
            raise
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        return None, exc
    conn.execute("RELEASE op")
    return result, None


def _settle_all(outcomes: list[tuple[Any, Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        _settle(future, result, error)


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


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
        self._connection: _Connection | None = None
        self._lock: IO[bytes] | None = None

    async def open(self) -> None:
        self._lock = _exclusive_lock(self.path)
        connection = _Connection(self.path)
        try:
            await connection.open()
        except BaseException:
            connection.executor.shutdown(wait=False)
            self._lock.close()
            self._lock = None
            raise
        self._connection = connection

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._connection is None:
            raise RuntimeError("the store is not open")
        future = asyncio.get_running_loop().create_future()
        self._connection.submit(fn, args, future)
        return await future

    async def ping(self) -> bool:
        return await self._call(lambda conn: conn.execute("SELECT 1").fetchone()[0] == 1)

    # ---- jobs ----------------------------------------------------------------------------

    async def create_job(self, job: Job, max_chain_cost: float | None = None) -> tuple[Job, bool]:
        return await self._call(_create_job, job, max_chain_cost)

    async def get_job(self, job_id: str) -> Job | None:
        return await self._call(_get_job, job_id)

    async def job_detail(self, job_id: str) -> JobDetail | None:
        """The job with its children, events and steps, in one round trip."""
        return await self._call(_job_detail, job_id)

    async def job_by_key(self, idempotency_key: str) -> Job | None:
        return await self._call(_job_by_key, idempotency_key)

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
        return await self._call(lambda conn: _adopt(conn, job_id, task_id, poll_at) == 1)

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
            f"SELECT {_JOB_FIELDS} FROM jobs WHERE status = 'submitted' AND next_attempt_at <= ?"  # noqa: S608
            " ORDER BY next_attempt_at LIMIT ?"
        )
        return await self._call(lambda conn: [_job(r) for r in conn.execute(sql, (now, limit))])

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
        return await self._call(_insert_poll, job_id, task_id, status, payload, now)

    async def pending_events(self, now: float, limit: int) -> list[tuple[Event, Job | None]]:
        """Events due for processing, each with its job as it is now."""
        return await self._call(_pending_events, now, limit)

    async def finish_event(
        self, event_id: int, *, verified: bool | None, note: str | None, now: float
    ) -> None:
        await self._call(_finish_event, event_id, verified, note, now)

    async def retry_event(self, event_id: int, at: float, note: str) -> None:
        sql = (
            "UPDATE events SET attempts = attempts + 1, next_attempt_at = ?, note = ? WHERE id = ?"
        )
        await self._call(lambda conn: conn.execute(sql, (at, note, event_id)).rowcount)

    # ---- steps ---------------------------------------------------------------------------

    async def claim_step(self, now: float, lease_until: float) -> Claimed | None:
        """Claims the next due step, with its job and the rule's earlier results."""
        return await self._call(_claim_step, now, lease_until)

    # A claim's attempt number is its lease token: a worker whose lease expired (and whose
    # step was claimed again) can no longer change the step ("AND attempts = ?" below).

    async def heartbeat(self, step: Step, lease_until: float) -> None:
        sql = (
            "UPDATE steps SET lease_until = ? WHERE id = ? AND status = 'running' AND attempts = ?"
        )
        values = (lease_until, step.id, step.attempts)
        await self._call(lambda conn: conn.execute(sql, values).rowcount)

    async def step_succeeded(self, step: Step, result: dict[str, Any], now: float) -> bool:
        return await self._call(_step_succeeded, step.id, step.attempts, _encode(result), now)

    async def step_failed(self, step: Step, error: str, retry_at: float | None, now: float) -> None:
        status = StepStatus.RETRYING if retry_at is not None else StepStatus.DEAD
        sql = (
            "UPDATE steps SET status = ?, last_error = ?,"
            " next_run_at = COALESCE(?, next_run_at), lease_until = NULL, updated_at = ?"
            " WHERE id = ? AND status = 'running' AND attempts = ?"
        )
        values = (status, error, retry_at, now, step.id, step.attempts)
        await self._call(lambda conn: conn.execute(sql, values).rowcount)

    async def recover_steps(self, now: float, everything: bool = False) -> int:
        """Returns running steps whose lease expired (or all running steps) to the queue."""
        sql = (
            "UPDATE steps SET status = 'retrying', lease_until = NULL, next_run_at = ?,"
            " updated_at = ? WHERE status = 'running' AND (? OR lease_until < ?)"
        )
        values = (now, now, everything, now)
        return await self._call(lambda conn: conn.execute(sql, values).rowcount)

    async def prune(self, before: float, limit: int) -> int:
        """Deletes up to ``limit`` jobs that ended before ``before`` and whose steps have all
        settled, with their events, steps and tags. Returns how many jobs went."""
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
        return await self._call(lambda conn: [r[0] for r in conn.execute(sql, params)])

    async def release_step(self, step: Step, now: float) -> None:
        """Gives a running step back to the queue (shutdown): it runs again on the next start."""
        sql = (
            "UPDATE steps SET status = 'retrying', lease_until = NULL, next_run_at = ?,"
            " attempts = MAX(attempts - 1, 0), updated_at = ?"
            " WHERE id = ? AND status = 'running' AND attempts = ?"
        )
        values = (now, now, step.id, step.attempts)
        await self._call(lambda conn: conn.execute(sql, values).rowcount)

    async def replay(self, job_id: str, steps: list[PlannedStep], force: bool, now: float) -> int:
        return await self._call(_replay, job_id, steps, force, now)


# ---- operations, each run on the store's thread inside a savepoint ---------------------
# Each SQL text below is a constant: sqlite3 compiles it once and finds it in its cache.

_SQL_JOB = f"SELECT {_JOB_FIELDS} FROM jobs WHERE id = ?"  # noqa: S608
_SQL_JOB_BY_KEY = f"SELECT {_JOB_FIELDS} FROM jobs WHERE idempotency_key = ?"  # noqa: S608
_SQL_INSERT_JOB = f"INSERT INTO jobs ({_JOB_FIELDS}) VALUES ({', '.join('?' * len(_JOB_COLUMNS))})"  # noqa: S608
_SQL_INSERT_TAG = "INSERT OR IGNORE INTO job_tags (tag, job_id) VALUES (?, ?)"


@quick
def _create_job(
    conn: sqlite3.Connection, job: Job, max_chain_cost: float | None
) -> tuple[Job, bool]:
    if job.idempotency_key:
        row = conn.execute(_SQL_JOB_BY_KEY, (job.idempotency_key,)).fetchone()
        if row is not None:
            return _job(row), False
    if max_chain_cost is not None and job.parent_id:
        # Checked and inserted in one transaction: sibling follow-ups cannot both slip in.
        spent = _chain_cost(conn, job.parent_id)
        if spent + (job.cost or 0.0) > max_chain_cost:
            raise BudgetExceeded(
                f"budget: the chain has cost {spent:.4f} and this follow-up would add "
                f"{job.cost or 0.0:.4f}, over max_chain_cost {max_chain_cost:.4f}"
            )
    values = list(msgspec.structs.astuple(job))
    for i in _JOB_JSON:
        if values[i] is not None:
            values[i] = _encode(values[i])
    conn.execute(_SQL_INSERT_JOB, values)
    if job.tags:
        conn.executemany(_SQL_INSERT_TAG, [(t, job.id) for t in job.tags if isinstance(t, str)])
    return job, True


@quick
@one_write
def _get_job(conn: sqlite3.Connection, job_id: str) -> Job | None:
    row = conn.execute(_SQL_JOB, (job_id,)).fetchone()
    return None if row is None else _job(row)


_SQL_CHILDREN = "SELECT id FROM jobs WHERE parent_id = ? ORDER BY id"
_SQL_JOB_EVENTS = f"SELECT {_EVENT_FIELDS} FROM events WHERE job_id = ? ORDER BY id"  # noqa: S608
_SQL_JOB_STEPS = (
    f"SELECT {_STEP_FIELDS} FROM steps WHERE job_id = ?"  # noqa: S608
    " ORDER BY generation, rule, position"
)


def _children(conn: sqlite3.Connection, job_id: str) -> list[str]:
    return [r[0] for r in conn.execute(_SQL_CHILDREN, (job_id,))]


def _job_events(conn: sqlite3.Connection, job_id: str) -> list[Event]:
    return [_event(r) for r in conn.execute(_SQL_JOB_EVENTS, (job_id,))]


def _job_steps(conn: sqlite3.Connection, job_id: str) -> list[Step]:
    return [_step(r) for r in conn.execute(_SQL_JOB_STEPS, (job_id,))]


@quick
@one_write
def _job_detail(conn: sqlite3.Connection, job_id: str) -> JobDetail | None:
    job = _get_job(conn, job_id)
    if job is None:
        return None
    return JobDetail(
        job=job,
        children=_children(conn, job_id),
        events=_job_events(conn, job_id),
        steps=_job_steps(conn, job_id),
    )


@quick
@one_write
def _job_by_key(conn: sqlite3.Connection, idempotency_key: str) -> Job | None:
    row = conn.execute(_SQL_JOB_BY_KEY, (idempotency_key,)).fetchone()
    return None if row is None else _job(row)


@one_write
def _list_jobs(
    conn: sqlite3.Connection,
    status: str | None,
    model: str | None,
    tag: str | None,
    limit: int,
    cursor: str | None,
) -> list[Job]:
    """Newest first (ids sort by time), after ``cursor`` when given. Only the filters given
    are in the SQL, so that an index serves them; a tag is looked up in ``job_tags``."""
    if tag is None:
        source, id_column, conditions, params = "jobs", "id", [], []
    else:
        # job_tags first (CROSS JOIN keeps that order): the tag's entries, newest first.
        source = "job_tags CROSS JOIN jobs ON jobs.id = job_tags.job_id"
        id_column, conditions, params = "job_tags.job_id", ["job_tags.tag = ?"], [tag]
    if status is not None:
        conditions.append("status = ?")
        params.append(status)
    if model is not None:
        conditions.append("model = ?")
        params.append(model)
    if cursor is not None:
        conditions.append(f"{id_column} < ?")
        params.append(cursor)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = f"SELECT {_JOB_FIELDS} FROM {source}{where} ORDER BY {id_column} DESC LIMIT ?"  # noqa: S608
    return [_job(r) for r in conn.execute(sql, [*params, limit])]


def _set_job(
    conn: sqlite3.Connection,
    job_id: str,
    assignments: str,
    values: list[Any],
    condition: str = "1",
) -> int:
    sql = f"UPDATE jobs SET {assignments}, updated_at = (julianday('now') - 2440587.5) * 86400.0 WHERE id = ? AND {condition}"  # noqa: S608, E501
    return conn.execute(sql, [*values, job_id]).rowcount


def _chain_cost(conn: sqlite3.Connection, job_id: str) -> float:
    row = conn.execute(
        """WITH RECURSIVE
             up(id, parent_id) AS (
               SELECT id, parent_id FROM jobs WHERE id = ?
               UNION ALL SELECT j.id, j.parent_id FROM jobs j JOIN up ON j.id = up.parent_id),
             down(id, cost) AS (
               SELECT id, cost FROM jobs WHERE id = (SELECT id FROM up WHERE parent_id IS NULL)
               UNION ALL SELECT j.id, j.cost FROM jobs j JOIN down ON j.parent_id = down.id)
           SELECT COALESCE(SUM(cost), 0) FROM down""",
        (job_id,),
    ).fetchone()
    return float(row[0])


def _set_job_where(conn: sqlite3.Connection, assignments: str, condition: str) -> int:
    sql = f"UPDATE jobs SET {assignments} WHERE {condition}"  # noqa: S608
    return conn.execute(sql).rowcount


@quick
@one_write
def _mark_submitted(conn: sqlite3.Connection, job_id: str, task_id: str, poll_at: float) -> None:
    # A fast callback may have finished the job already: never move it back.
    conn.execute(
        """UPDATE jobs SET upstream_task_id = COALESCE(upstream_task_id, ?),
               status = CASE WHEN status = 'accepted' THEN 'submitted' ELSE status END,
               submit_state = NULL,
               error = CASE WHEN status = 'accepted' THEN NULL ELSE error END,
               next_attempt_at = CASE WHEN status = 'accepted' THEN ? ELSE next_attempt_at END,
               updated_at = (julianday('now') - 2440587.5) * 86400.0
           WHERE id = ?""",
        (task_id, poll_at, job_id),
    )


_SQL_CLAIM_SUBMISSIONS = f"""UPDATE jobs SET submit_state = 'inflight',
           submit_attempts = submit_attempts + 1
       WHERE id IN (SELECT id FROM jobs WHERE status = 'accepted'
                      AND submit_state = 'waiting' AND next_attempt_at <= ?
                    ORDER BY next_attempt_at LIMIT ?)
       RETURNING {_JOB_FIELDS}"""  # noqa: S608


@quick
@one_write
def _claim_submissions(conn: sqlite3.Connection, now: float, limit: int) -> list[Job]:
    return [_job(r) for r in conn.execute(_SQL_CLAIM_SUBMISSIONS, (now, limit)).fetchall()]


@quick
def _finish_job(
    conn: sqlite3.Connection,
    job_id: str,
    status: str,
    output: dict[str, Any] | None,
    outputs: list[dict[str, Any]],
    error: str | None,
    steps: list[PlannedStep],
    now: float,
) -> bool:
    changed = conn.execute(
        """UPDATE jobs SET status = ?, output = ?, outputs = ?, error = ?, finished_at = ?,
               updated_at = ?, next_attempt_at = NULL, submit_state = NULL
           WHERE id = ? AND status IN ('accepted', 'submitted')""",
        (
            status,
            None if output is None else _encode(output),
            _encode(outputs),
            error,
            now,
            now,
            job_id,
        ),
    ).rowcount
    if changed:
        _insert_steps(conn, job_id, steps, 0, now)
    return bool(changed)


def _insert_steps(
    conn: sqlite3.Connection, job_id: str, steps: list[PlannedStep], generation: int, now: float
) -> None:
    if not steps:
        return
    conn.executemany(
        """INSERT INTO steps (job_id, rule, position, handler, generation, status,
                              next_run_at, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)""",
        [(job_id, s.rule, s.position, s.handler, generation, now, now, now) for s in steps],
    )


# One statement: the duplicate check and the insert (a repeat of a result already recorded,
# or of the job's end, is stored as a duplicate, processed at once).
_SQL_INSERT_CALLBACK = """INSERT INTO events (job_id, source, task_id, status, payload,
                               received_at, duplicate, verified, processed_at, next_attempt_at)
    SELECT :job, 'callback', :task, :status, :payload, :now, d, NULL,
           CASE WHEN d THEN :now END, :now
      FROM (SELECT EXISTS (SELECT 1 FROM events WHERE job_id = :job AND status = :status
                             AND (processed_at IS NULL OR verified = 1 OR source = 'poll'))
                OR EXISTS (SELECT 1 FROM jobs WHERE id = :job AND status = :status) AS d)
    RETURNING id, duplicate"""


def _record_callback(
    conn: sqlite3.Connection,
    job_id: str,
    task_id: str | None,
    status: str,
    payload: dict[str, Any],
    now: float,
    poll_at: float,
) -> Event:
    """Stores a callback; a repeat of a result already recorded is marked duplicate.

    Raises ``NotFound`` for an unknown job and ``Conflict`` for another task's callback."""
    job = conn.execute("SELECT upstream_task_id FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    if job[0] and task_id and task_id != job[0]:
        raise Conflict(f"task_id {task_id!r} is not this job's task")
    if task_id and not job[0]:
        # The create answer never reached us (or has not yet): the callback tells the task,
        # and the job is the upstream's from now on (polled if nothing more comes). Two
        # writes: in a savepoint of their own.
        conn.execute("SAVEPOINT adopt")
        try:
            _adopt(conn, job_id, task_id, poll_at)
            event = _insert_callback(conn, job_id, task_id, status, payload, now)
        except Exception:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO adopt")
                conn.execute("RELEASE adopt")
            raise
        conn.execute("RELEASE adopt")
        return event
    return _insert_callback(conn, job_id, task_id, status, payload, now)


quick(one_write(_record_callback))


def _insert_callback(
    conn: sqlite3.Connection,
    job_id: str,
    task_id: str | None,
    status: str,
    payload: dict[str, Any],
    now: float,
) -> Event:
    params = {
        "job": job_id,
        "task": task_id,
        "status": status,
        "payload": _encode(payload),
        "now": now,
    }
    (event_id, duplicate), *_ = conn.execute(_SQL_INSERT_CALLBACK, params).fetchall()
    # The row is what was just written: no need to read it back.
    return Event(
        id=event_id,
        job_id=job_id,
        source="callback",
        task_id=task_id,
        status=status,
        payload=payload,
        received_at=now,
        duplicate=bool(duplicate),
        processed_at=now if duplicate else None,
    )


def _adopt(conn: sqlite3.Connection, job_id: str, task_id: str, poll_at: float) -> int:
    """The job's task is ``task_id`` (told by a callback, or by an operator): the job is the
    upstream's from now on, and is polled at ``poll_at`` if nothing else comes."""
    return conn.execute(
        """UPDATE jobs SET upstream_task_id = ?,
               status = CASE WHEN status = 'accepted' THEN 'submitted' ELSE status END,
               submit_state = NULL, next_attempt_at = CASE WHEN status = 'accepted'
                                                      THEN ? ELSE next_attempt_at END
           WHERE id = ? AND upstream_task_id IS NULL""",
        (task_id, poll_at, job_id),
    ).rowcount


_SQL_INSERT_POLL = """INSERT INTO events (job_id, source, task_id, status, payload, received_at,
                               verified, processed_at, next_attempt_at)
           VALUES (?, 'poll', ?, ?, ?, ?, 1, ?, ?)"""


def _insert_poll(
    conn: sqlite3.Connection,
    job_id: str,
    task_id: str,
    status: str,
    payload: dict[str, Any],
    now: float,
) -> Event:
    """A poll's answer: the upstream's own word, so verified and processed at once."""
    values = (job_id, task_id, status, _encode(payload), now, now, now)
    return Event(
        id=conn.execute(_SQL_INSERT_POLL, values).lastrowid,
        job_id=job_id,
        source="poll",
        task_id=task_id,
        status=status,
        payload=payload,
        received_at=now,
        verified=True,
        processed_at=now,
    )


_SQL_PENDING_EVENTS = f"""SELECT {_EVENT_FIELDS} FROM events
       WHERE processed_at IS NULL AND next_attempt_at <= ?
       ORDER BY next_attempt_at, id LIMIT ?"""  # noqa: S608


@quick
@one_write
def _pending_events(
    conn: sqlite3.Connection, now: float, limit: int
) -> list[tuple[Event, Job | None]]:
    events = [_event(r) for r in conn.execute(_SQL_PENDING_EVENTS, (now, limit)).fetchall()]
    return [(event, _get_job(conn, event.job_id)) for event in events]


@quick
@one_write
def _finish_event(
    conn: sqlite3.Connection, event_id: int, verified: bool | None, note: str | None, now: float
) -> None:
    conn.execute(
        "UPDATE events SET processed_at = ?, verified = ?, note = ? WHERE id = ?",
        (now, verified, note, event_id),
    )


_SQL_CLAIM_STEP = f"""UPDATE steps SET status = 'running', attempts = attempts + 1,
           lease_until = ?, updated_at = ?, first_attempt_at = COALESCE(first_attempt_at, ?)
       WHERE id = (
           SELECT s.id FROM steps s
           WHERE s.status IN ('pending', 'retrying') AND s.next_run_at <= ?
             AND NOT EXISTS (
                 SELECT 1 FROM steps p
                 WHERE p.job_id = s.job_id AND p.rule = s.rule
                   AND p.generation = s.generation AND p.position < s.position
                   AND p.status != 'succeeded')
           ORDER BY s.next_run_at, s.id LIMIT 1)
       RETURNING {_STEP_FIELDS}"""  # noqa: S608


@quick
@one_write
def _claim_step(conn: sqlite3.Connection, now: float, lease_until: float) -> Claimed | None:
    rows = conn.execute(_SQL_CLAIM_STEP, (lease_until, now, now, now)).fetchall()
    if not rows:
        return None
    step = _step(rows[0])
    return Claimed(step=step, job=_get_job(conn, step.job_id), prior=_prior_results(conn, step))


@quick
@one_write
def _step_succeeded(
    conn: sqlite3.Connection, step_id: int, attempts: int, result: bytes, now: float
) -> bool:
    changed = conn.execute(
        """UPDATE steps SET status = 'succeeded', result = ?, last_error = NULL,
               lease_until = NULL, updated_at = ?
           WHERE id = ? AND status = 'running' AND attempts = ?""",
        (result, now, step_id, attempts),
    ).rowcount
    return changed == 1


def _prior_results(conn: sqlite3.Connection, step: Step) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        """SELECT handler, result FROM steps WHERE job_id = ? AND rule = ? AND generation = ?
               AND position < ? AND status = 'succeeded' ORDER BY position""",
        (step.job_id, step.rule, step.generation, step.position),
    )
    return {handler: _decode(result or b"{}") for handler, result in rows}


def _prune(conn: sqlite3.Connection, before: float, limit: int) -> int:
    ids = [
        r[0]
        for r in conn.execute(
            """SELECT id FROM jobs j
           WHERE j.status IN ('completed', 'failed', 'rejected')
             AND COALESCE(j.finished_at, j.updated_at) < ?
             AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.job_id = j.id
                               AND s.status NOT IN ('succeeded', 'dead'))
           LIMIT ?""",
            (before, limit),
        )
    ]
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    for sql in (  # the rows that refer to the jobs go first (foreign keys)
        f"UPDATE jobs SET parent_id = NULL WHERE parent_id IN ({marks})",  # noqa: S608
        f"DELETE FROM events WHERE job_id IN ({marks})",  # noqa: S608
        f"DELETE FROM steps WHERE job_id IN ({marks})",  # noqa: S608
        f"DELETE FROM job_tags WHERE job_id IN ({marks})",  # noqa: S608
        f"DELETE FROM jobs WHERE id IN ({marks})",  # noqa: S608
    ):
        conn.execute(sql, ids)
    return len(ids)


def _replay(
    conn: sqlite3.Connection, job_id: str, steps: list[PlannedStep], force: bool, now: float
) -> int:
    """Revives unfinished steps; adds rules that now match; with ``force`` reruns all."""
    if force:
        generation = conn.execute(
            "SELECT COALESCE(MAX(generation), -1) + 1 FROM steps WHERE job_id = ?", (job_id,)
        ).fetchone()[0]
        _insert_steps(conn, job_id, steps, generation, now)
        return len(steps)
    revived = conn.execute(
        """UPDATE steps SET status = 'pending', attempts = 0, next_run_at = ?, updated_at = ?,
               first_attempt_at = NULL
           WHERE job_id = ? AND status IN ('dead', 'retrying')""",
        (now, now, job_id),
    ).rowcount
    existing = {
        r[0] for r in conn.execute("SELECT DISTINCT rule FROM steps WHERE job_id = ?", (job_id,))
    }
    fresh = [s for s in steps if s.rule not in existing]
    generation = conn.execute(
        "SELECT COALESCE(MAX(generation), 0) FROM steps WHERE job_id = ?", (job_id,)
    ).fetchone()[0]
    _insert_steps(conn, job_id, fresh, generation, now)
    return revived + len(fresh)
