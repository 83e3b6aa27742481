"""The REST API (``/v1``, bearer keys), the callback receiver and the health routes."""

from __future__ import annotations

import hashlib
import time
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.params import Parameter
from msgspec import Meta

from service import catalog, pipeline, receiver
from service.config import Duration, seconds
from service.engine import Submitted
from service.errors import AuthError, Conflict, InvalidInput, NotFound, RequestError
from service.runtime import Runtime
from service.security import api_key_ok, bearer, new_job_id
from service.store import Job, JobDetail, JobStatus, StepStatus, SubmitState

API_MAX_BYTES = 1024 * 1024

Tag = Annotated[str, Meta(min_length=1, max_length=64)]


class JobCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    model: Annotated[str, Meta(min_length=1, max_length=200)]
    input: dict[str, Any] = {}
    tags: Annotated[list[Tag], Meta(max_length=32)] = []
    metadata: Annotated[dict[str, Any], Meta(max_length=50)] = {}
    dry_run: bool = False


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


async def require_api_key(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    # async on purpose: Litestar runs a sync guard in a worker thread, a round trip per request
    keys = connection.app.state.runtime.config.server.api_keys
    if not api_key_ok(keys, bearer(connection.headers.get("authorization"))):
        raise AuthError("missing or invalid API key: send 'Authorization: Bearer <key>'")


# ---- views -------------------------------------------------------------------------------


def job_summary(job: Job) -> dict[str, Any]:
    view = pipeline.job_view(job)
    view.update(
        updated_at=pipeline.iso(job.updated_at),
        finished_at=pipeline.iso(job.finished_at),
        output=job.output,
        outputs=job.outputs,
        error=job.error,
    )
    if job.cost is not None:
        view["cost"] = job.cost
    if job.status == JobStatus.ACCEPTED and job.submit_state:
        view["submission"] = job.submit_state
    return view


def job_detail(detail: JobDetail) -> dict[str, Any]:
    view = job_summary(detail.job)
    view["children"] = detail.children
    view["events"] = [
        {
            "id": e.id,
            "source": e.source,
            "status": e.status,
            "task_id": e.task_id,
            "received_at": pipeline.iso(e.received_at),
            "duplicate": e.duplicate,
            "verified": e.verified,
            "processed": e.processed_at is not None,
            "note": e.note,
        }
        for e in detail.events
    ]
    view["runs"] = [
        {
            "rule": s.rule,
            "handler": s.handler,
            "position": s.position,
            "generation": s.generation,
            "status": s.status,
            "attempts": s.attempts,
            "last_error": s.last_error,
            "result": s.result,
            "next_run_at": pipeline.iso(s.next_run_at) if s.status == "retrying" else None,
        }
        for s in detail.steps
    ]
    return view


async def detail_of(rt: Runtime, job_id: str) -> dict[str, Any]:
    detail = await rt.store.job_detail(job_id)
    if detail is None:
        raise NotFound(f"no job {job_id!r}")
    return job_detail(detail)


# ---- /v1/jobs ------------------------------------------------------------------------------


def _request_hash(data: JobCreate) -> str:
    return hashlib.sha256(msgspec.json.encode(data, order="sorted")).hexdigest()


def _validate(rt: Runtime, data: JobCreate) -> None:
    problems = catalog.validate(data.model, data.input)
    if rt.config.upstream.allow_unknown_models and catalog.get(data.model) is None:
        return
    unknown = [p for p in problems if p.path == "model"]
    if unknown:
        raise InvalidInput(unknown[0].message, details=[msgspec.structs.asdict(unknown[0])])
    if problems:
        raise InvalidInput(
            f"input is not valid for {data.model}: "
            + "; ".join(f"{p.path}: {p.message}" for p in problems),
            details=[msgspec.structs.asdict(p) for p in problems],
        )


@post("/jobs", status_code=201, summary="Submit a job")
async def create_job(
    request: Request,
    data: JobCreate,
    idempotency_key: Annotated[
        str | None, Parameter(header="Idempotency-Key", max_length=200, pattern=r"^[!-~]+$")
    ] = None,
) -> Response:
    rt = runtime_of(request)
    _validate(rt, data)
    if data.dry_run:
        priced = await rt.upstream.create(data.model, data.input, dry_run=True)
        return Response({"dry_run": True, "model": data.model, **priced}, status_code=200)
    now = time.time()
    job = Job(
        id=new_job_id(now),
        model=data.model,
        input=data.input,
        tags=data.tags,
        metadata=data.metadata,
        created_at=now,
        updated_at=now,
        idempotency_key=idempotency_key,
        request_hash=_request_hash(data),
        submit_state=SubmitState.INFLIGHT,
        submit_attempts=1,
    )
    stored, created = await rt.store.create_job(job)
    if not created:
        return await _replayed(rt, stored, job.request_hash)
    outcome, error = await rt.engine.submit(stored)
    if outcome is Submitted.REFUSED and error is not None:
        raise error
    code = 201 if outcome is Submitted.OK else 202
    return Response(await detail_of(rt, job.id), status_code=code)


async def _replayed(rt: Runtime, job: Job, request_hash: str | None) -> Response:
    if job.request_hash != request_hash:
        raise Conflict("this Idempotency-Key was used with a different request body")
    return Response(
        await detail_of(rt, job.id), status_code=200, headers={"Idempotent-Replayed": "true"}
    )


@get("/jobs/{job_id:str}", summary="A job, with its callbacks and steps")
async def show_job(request: Request, job_id: str) -> dict[str, Any]:
    return await detail_of(runtime_of(request), job_id)


@get("/jobs", summary="Jobs, newest first")
async def list_jobs(
    request: Request,
    status: Annotated[str | None, Parameter(query="status")] = None,
    model: str | None = None,
    tag: str | None = None,
    limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Parameter(pattern=r"^job_[0-9a-z]{26}$")] = None,
) -> dict[str, Any]:
    if status is not None and status not in {s.value for s in JobStatus}:
        raise RequestError(f"status must be one of {', '.join(s.value for s in JobStatus)}")
    rt = runtime_of(request)
    jobs = await rt.store.list_jobs(
        status=status, model=model, tag=tag, limit=limit + 1, cursor=cursor
    )
    page = jobs[:limit]
    more = len(jobs) > limit
    return {
        "data": [job_summary(j) for j in page],
        "next_cursor": page[-1].id if more and page else None,
    }


class ReplayRequest(msgspec.Struct, forbid_unknown_fields=True):
    force: bool = False


@post("/jobs/{job_id:str}/replay", status_code=202, summary="Run the matching rules again")
async def replay_job(
    request: Request, job_id: str, data: ReplayRequest | None = None
) -> dict[str, Any]:
    rt = runtime_of(request)
    job = await rt.store.get_job(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    force = bool(data and data.force)
    if job.submit_state == SubmitState.AMBIGUOUS and job.status == JobStatus.ACCEPTED:
        return await _resubmit(rt, job, force)
    if job.status not in (JobStatus.COMPLETED, JobStatus.FAILED):
        raise Conflict(f"job {job_id} has no result to replay yet (status {job.status})")
    return {"job_id": job_id, "steps_scheduled": await _replay(rt, job, force)}


async def _replay(rt: Runtime, job: Job, force: bool) -> int:
    steps = pipeline.plan(rt.config.rules, job, job.status)
    count = await rt.store.replay(job.id, steps, force, time.time())
    rt.engine.notify("steps")
    return count


async def _resubmit(rt: Runtime, job: Job, force: bool) -> dict[str, Any]:
    """An ambiguous submission is resent only when the operator says so: it may pay twice."""
    if not force:
        raise Conflict(
            f"job {job.id}'s submission outcome is unknown (the upstream may have "
            "created a task); replay with force to submit it again"
        )
    await rt.store.schedule_submit(job.id, time.time(), "resubmitted by replay (force)")
    rt.engine.notify("submit")
    return {"job_id": job.id, "steps_scheduled": 0, "resubmitted": True}


class AdoptRequest(msgspec.Struct, forbid_unknown_fields=True):
    task_id: Annotated[str, Meta(min_length=1, max_length=200)]


@post("/jobs/{job_id:str}/adopt", status_code=202, summary="Attach a task found upstream")
async def adopt_job(request: Request, job_id: str, data: AdoptRequest) -> dict[str, Any]:
    """For a job whose submission is ambiguous: the operator found its task upstream (in the
    provider's dashboard) and attaches it; the job is then polled and finished as usual."""
    rt = runtime_of(request)
    job = await rt.store.get_job(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    if job.status != JobStatus.ACCEPTED or job.upstream_task_id:
        raise Conflict(f"job {job_id} already has its task (status {job.status})")
    if not await rt.store.adopt(job_id, data.task_id, time.time()):
        raise Conflict(f"job {job_id} changed meanwhile; read it again")
    rt.engine.notify("polls")
    return {"job_id": job_id, "upstream_task_id": data.task_id, "status": "submitted"}


class BulkReplayRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    status: StepStatus | None = None
    since: Duration | None = None
    force: bool = False
    limit: Annotated[int, Meta(ge=1, le=10000)] = 1000


@post("/replay", status_code=202, summary="Replay every job with steps in a status, by filter")
async def replay_many(request: Request, data: BulkReplayRequest) -> dict[str, Any]:
    if data.status is None and data.since is None:
        raise RequestError("give status and/or since: a replay of every job is never implied")
    rt = runtime_of(request)
    since = time.time() - seconds(data.since) if data.since else None
    ids = await rt.store.replay_candidates(step_status=data.status, since=since, limit=data.limit)
    total = 0
    for job_id in ids:
        job = await rt.store.get_job(job_id)
        if job is not None:
            total += await _replay(rt, job, data.force)
    return {"jobs": ids, "steps_scheduled": total}


@get("/models", summary="The model catalog")
async def list_models(
    kind: Literal["video", "image", "audio", "text"] | None = None,
) -> dict[str, Any]:
    models = [m for m in catalog.all_models() if kind is None or m.kind == kind]
    return {"data": [catalog.describe(m) for m in models]}


@get("/models/{name:path}", summary="One model of the catalog")
async def show_model(name: str) -> dict[str, Any]:
    spec = catalog.get(name.lstrip("/"))
    if spec is None:
        raise NotFound(f"unknown model {name.lstrip('/')!r}")
    return catalog.describe(spec)


api_router = Router(
    path="/v1",
    route_handlers=[
        create_job,
        show_job,
        list_jobs,
        replay_job,
        replay_many,
        adopt_job,
        list_models,
        show_model,
    ],
    guards=[require_api_key],
    security=[{"BearerToken": []}],
    request_max_body_size=API_MAX_BYTES,
)


# ---- the callback receiver ---------------------------------------------------------------


@post(
    "/hooks/{job_id:str}/{token:str}",
    status_code=200,
    summary="Callback receiver",
    request_max_body_size=receiver.CALLBACK_MAX_BYTES,
    security=[],
)
async def receive_callback(request: Request, job_id: str, token: str) -> dict[str, Any]:
    """Served by ``service.receiver.FastPath`` in front of the app; documented here."""
    return await receiver.ingest(runtime_of(request), job_id, token, request.headers, request.body)


# ---- health ------------------------------------------------------------------------------


@get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", summary="Readiness: the store answers and the service is not stopping")
async def readyz(request: Request) -> Response:
    rt = runtime_of(request)
    ready = not rt.stopping and await rt.store.ping()
    return Response(
        {"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503
    )


@get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
async def metrics(request: Request) -> bytes:
    return runtime_of(request).metrics.render()


public_handlers = [receive_callback, healthz, readyz, metrics]
