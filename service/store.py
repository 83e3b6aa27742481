"""What taskhook stores, and the interface every storage backend implements.

The records are plain msgspec Structs; ``Store`` is the protocol the service codes against.
``service.sqlite_store`` is the embedded backend; a PostgreSQL backend is a new module that
implements the same protocol.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol

import msgspec


class JobStatus(enum.StrEnum):
    ACCEPTED = "accepted"  # stored, not yet submitted
    SUBMITTED = "submitted"  # the upstream has it
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"  # the upstream or validation refused it


TERMINAL = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.REJECTED)


class SubmitState(enum.StrEnum):
    """Where an ``accepted`` job stands with the upstream."""

    WAITING = "waiting"  # due for (re)submission at next_attempt_at
    INFLIGHT = "inflight"  # a create request is being made right now
    AMBIGUOUS = "ambiguous"  # a create was sent and no answer came: never resent blindly


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    DEAD = "dead"


class Job(msgspec.Struct, kw_only=True):
    id: str
    model: str
    input: dict[str, Any]
    tags: list[str] = []
    metadata: dict[str, Any] = {}
    status: str = JobStatus.ACCEPTED
    upstream_task_id: str | None = None
    parent_id: str | None = None
    depth: int = 0
    created_at: float
    updated_at: float
    finished_at: float | None = None
    output: dict[str, Any] | None = None  # the upstream's raw output mapping
    outputs: list[dict[str, Any]] = []  # normalised: url, field, index, kind, filename
    error: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    submit_state: str | None = None
    submit_attempts: int = 0
    next_attempt_at: float | None = None  # next submission (accepted) or poll (submitted)
    cost: float | None = None  # the dry-run price, when the job was priced


class Event(msgspec.Struct, kw_only=True):
    id: int
    job_id: str
    source: str  # callback | poll
    task_id: str | None
    status: str | None
    payload: dict[str, Any]
    received_at: float
    duplicate: bool = False
    verified: bool | None = None
    processed_at: float | None = None
    attempts: int = 0
    note: str | None = None


class Step(msgspec.Struct, kw_only=True):
    id: int
    job_id: str
    rule: str
    position: int
    handler: str
    generation: int
    status: str
    attempts: int
    last_error: str | None
    result: dict[str, Any] | None
    next_run_at: float
    created_at: float
    updated_at: float
    first_attempt_at: float | None = None


class Claimed(msgspec.Struct):
    """A claimed step with what running it needs, read in the claim's own round trip."""

    step: Step
    job: Job | None
    prior: dict[str, dict[str, Any]]  # results of the rule's earlier steps, by handler


class JobDetail(msgspec.Struct):
    job: Job
    children: list[str]
    events: list[Event]
    steps: list[Step]


class PlannedStep(msgspec.Struct, frozen=True):
    rule: str
    position: int
    handler: str


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> bool: ...

    # jobs
    async def create_job(
        self, job: Job, max_chain_cost: float | None = None
    ) -> tuple[Job, bool]: ...
    async def get_job(self, job_id: str) -> Job | None: ...
    async def job_detail(self, job_id: str) -> JobDetail | None: ...
    async def job_by_key(self, idempotency_key: str) -> Job | None: ...
    async def list_jobs(
        self,
        *,
        status: str | None,
        model: str | None,
        tag: str | None,
        limit: int,
        cursor: str | None,
    ) -> list[Job]: ...
    async def chain_cost(self, job_id: str) -> float: ...
    async def mark_submitted(self, job_id: str, task_id: str, poll_at: float) -> None: ...
    async def mark_rejected(self, job_id: str, error: str) -> None: ...
    async def schedule_submit(self, job_id: str, at: float, error: str | None) -> None: ...
    async def mark_ambiguous(self, job_id: str, error: str) -> None: ...
    async def claim_submissions(self, now: float, limit: int) -> list[Job]: ...
    async def recover_inflight(self) -> int: ...
    async def adopt(self, job_id: str, task_id: str, poll_at: float) -> bool: ...
    async def due_polls(self, now: float, limit: int) -> list[Job]: ...
    async def schedule_poll(self, job_id: str, at: float) -> None: ...
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
    ) -> bool: ...

    # events
    # record_callback raises NotFound (no such job) or Conflict (another task's callback).
    async def record_callback(
        self,
        job_id: str,
        task_id: str | None,
        status: str,
        payload: dict[str, Any],
        now: float,
        poll_at: float,
    ) -> Event: ...
    async def record_poll(
        self, job_id: str, task_id: str, status: str, payload: dict[str, Any], now: float
    ) -> Event: ...
    async def pending_events(self, now: float, limit: int) -> list[tuple[Event, Job | None]]: ...
    async def finish_event(
        self, event_id: int, *, verified: bool | None, note: str | None, now: float
    ) -> None: ...
    async def retry_event(self, event_id: int, at: float, note: str) -> None: ...

    # steps
    async def claim_step(self, now: float, lease_until: float) -> Claimed | None: ...
    async def heartbeat(self, step: Step, lease_until: float) -> None: ...
    async def step_succeeded(self, step: Step, result: dict[str, Any], now: float) -> bool: ...
    async def step_failed(
        self, step: Step, error: str, retry_at: float | None, now: float
    ) -> None: ...
    async def recover_steps(self, now: float, everything: bool = False) -> int: ...
    async def prune(self, before: float, limit: int) -> int: ...
    async def replay_candidates(
        self, *, step_status: str | None, since: float | None, limit: int
    ) -> list[str]: ...
    async def release_step(self, step: Step, now: float) -> None: ...
    async def replay(
        self, job_id: str, steps: list[PlannedStep], force: bool, now: float
    ) -> int: ...
