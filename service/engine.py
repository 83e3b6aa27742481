"""What happens to a job: submission, callbacks, verification, reconciliation, steps.

Each public coroutine handles one unit of work and records the outcome in the store before
returning; the loops that call them live in ``service.worker``.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import random
import time
from typing import Any

import aiohttp
import httpx

from handlers import HandlerFailed, StepContext
from service import http, pipeline
from service.config import Config, seconds
from service.errors import (
    TaskhookError,
    UpstreamAmbiguous,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRefused,
    UpstreamUnavailable,
)
from service.fetch import Fetcher
from service.metrics import Metrics
from service.outputs import normalise
from service.ratelimit import RateLimiter
from service.security import callback_token, new_job_id
from service.store import Claimed, Event, Job, Step, Store, SubmitState
from service.upstream import TaskState, UpstreamClient, failure_reason

log = logging.getLogger("taskhook")

LEASE_SECONDS = 60.0
STEP_TIMEOUT_SECONDS = 30 * 60.0


class Submitted(enum.StrEnum):
    OK = "ok"
    REFUSED = "refused"
    RETRY = "retry"
    AMBIGUOUS = "ambiguous"


def step_key(step: Step) -> str:
    """A key that names one step of one rule run: the same on every retry, ASCII-safe for
    headers (rule names may be any text)."""
    name = f"{step.job_id}\x00{step.rule}\x00{step.generation}\x00{step.position}"
    return hashlib.sha256(name.encode()).hexdigest()[:32]


def backoff(attempt: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter: a random delay in [0, min(cap, base * 2^n)]."""
    return random.uniform(0, min(cap, base * 2 ** max(0, attempt - 1)))


class Services:
    """What handlers may use: the shared aiohttp ``session`` (what the built-in handlers
    use), safe downloads (``fetcher``), the config, and ``http``: an ``httpx.AsyncClient``
    for handler plugins written against it, created on first use."""

    def __init__(
        self, session: aiohttp.ClientSession, fetcher: Fetcher, config: Config, engine: Engine
    ) -> None:
        self.session = session
        self.fetcher = fetcher
        self.config = config
        self.engine = engine
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(30.0, connect=10.0), headers={"user-agent": http.USER_AGENT}
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


class Engine:
    def __init__(
        self,
        config: Config,
        store: Store,
        upstream: UpstreamClient,
        session: aiohttp.ClientSession,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.store = store
        self.upstream = upstream
        self.metrics = metrics
        fetcher = Fetcher(
            session,
            allow_private=config.security.allow_private_networks,
            max_bytes=config.security.max_download_bytes,
        )
        self.services = Services(session, fetcher, config, self)
        self.wake = {name: asyncio.Event() for name in ("submit", "events", "steps", "polls")}
        self.receiving = 0  # callbacks being received right now (service.receiver)
        self.reconcile_after = seconds(config.upstream.reconcile_after)
        self.poll_limiter = RateLimiter(config.upstream.reconcile_rate)

    def notify(self, name: str) -> None:
        self.wake[name].set()

    def callback_url(self, job_id: str) -> str:
        token = callback_token(self.config.server.secret, job_id)
        return f"{self.config.server.public_url.rstrip('/')}/hooks/{job_id}/{token}"

    # ---- submission -----------------------------------------------------------------------

    async def submit(self, job: Job) -> tuple[Submitted, Exception | None]:
        """Sends a job (in state ``inflight``) to the upstream and records what happened."""
        try:
            data = await self.upstream.create(
                job.model, job.input, callback_url=self.callback_url(job.id)
            )
        except (UpstreamRefused, UpstreamAuthFailed) as exc:
            await self.store.mark_rejected(job.id, exc.message)
            self.metrics.jobs.labels("rejected").inc()
            return Submitted.REFUSED, exc
        except UpstreamAmbiguous as exc:
            await self.store.mark_ambiguous(job.id, exc.message)
            log.warning("job %s: submission outcome unknown: %s", job.id, exc.message)
            return Submitted.AMBIGUOUS, exc
        except UpstreamUnavailable as exc:
            delay = max(exc.retry_after or 0.0, backoff(job.submit_attempts + 1, cap=600))
            await self.store.schedule_submit(job.id, time.time() + delay, exc.message)
            return Submitted.RETRY, exc
        await self.store.mark_submitted(job.id, data["task_id"], time.time() + self.reconcile_after)
        self.metrics.jobs.labels("submitted").inc()
        self.notify("polls")
        return Submitted.OK, None

    async def price(self, model: str, input: dict[str, Any]) -> float:
        """The upstream's dry-run price (nothing is created or spent)."""
        data = await self.upstream.create(model, input, dry_run=True)
        for key in ("cost", "price", "credits", "amount"):
            if isinstance(data.get(key), int | float):
                return float(data[key])
        raise UpstreamRefused("the upstream's dry run gave no price", status_code=502)

    async def spawn_child(
        self,
        parent: dict[str, Any],
        *,
        model: str,
        input: dict[str, Any],
        tags: list[str],
        metadata: dict[str, Any],
        key: str,
        cost: float | None,
        max_chain_cost: float | None = None,
    ) -> Job:
        """Records a follow-up job (the intent) for the submit loop; once per ``key``."""
        now = time.time()
        child = Job(
            id=new_job_id(now),
            model=model,
            input=input,
            tags=tags,
            metadata=metadata,
            parent_id=parent["id"],
            depth=parent["depth"] + 1,
            created_at=now,
            updated_at=now,
            idempotency_key=key,
            submit_state=SubmitState.WAITING,
            next_attempt_at=now,
            cost=cost,
        )
        stored, created = await self.store.create_job(child, max_chain_cost)
        if created:
            self.notify("submit")
        return stored

    # ---- results ----------------------------------------------------------------------------

    async def finish(self, job: Job, state: TaskState) -> bool:
        """Records the job's end and plans its rules' steps, in one transaction, once."""
        outputs = normalise(state.output) if state.status == "completed" else []
        steps = pipeline.plan(self.config.rules, job, state.status)
        changed = await self.store.finish_job(
            job.id,
            status=state.status,
            output=state.output,
            outputs=outputs,
            error=state.error,
            steps=steps,
            now=time.time(),
        )
        if changed:
            self.metrics.jobs.labels(state.status).inc()
            self.notify("steps")
        return changed

    async def process_event(self, event: Event, job: Job | None) -> None:
        """Verifies and acts on one stored callback (``job``: its job, read with it); an
        unexpected failure is retried later with backoff, so one bad event never holds up
        the others."""
        try:
            await self._process_event(event, job)
        except Exception as exc:
            log.exception("event %s of job %s could not be processed", event.id, event.job_id)
            retry_at = time.time() + backoff(event.attempts + 1, base=5, cap=600)
            await self.store.retry_event(event.id, retry_at, f"{type(exc).__name__}: {exc}")

    async def _process_event(self, event: Event, job: Job | None) -> None:
        if job is None or job.status not in ("accepted", "submitted"):
            status = job.status if job else "missing"
            await self.store.finish_event(
                event.id,
                verified=None,
                now=time.time(),
                note=f"job already {status}; nothing to do",
            )
            return
        if self.config.upstream.verify == "trust":
            await self._act_on_payload(job, event)
        else:
            await self._verify_and_act(job, event)

    async def _act_on_payload(self, job: Job, event: Event) -> None:
        payload = event.payload
        if event.status not in ("completed", "failed"):
            await self.store.finish_event(
                event.id,
                verified=False,
                now=time.time(),
                note=f"status {event.status!r} is not an end",
            )
            return
        data = payload.get("data")
        state = TaskState(
            task_id=event.task_id or "",
            status=event.status,
            output=data if isinstance(data, dict) else None,
            error=failure_reason(payload) if event.status == "failed" else None,
        )
        await self.finish(job, state)
        await self.store.finish_event(
            event.id, verified=False, note="trusted without checking", now=time.time()
        )

    async def _verify_and_act(self, job: Job, event: Event) -> None:
        task_id = job.upstream_task_id or event.task_id
        if not task_id:
            await self.store.finish_event(
                event.id, verified=False, now=time.time(), note="no task id to verify against"
            )
            return
        try:
            state = await self.upstream.status(task_id)
        except UpstreamRefused as exc:
            await self.store.finish_event(
                event.id,
                verified=False,
                now=time.time(),
                note=f"the upstream does not confirm: {exc.message}",
            )
            return
        except UpstreamError as exc:
            retry_at = time.time() + backoff(event.attempts + 1, cap=120)
            await self.store.retry_event(event.id, retry_at, f"verification failed: {exc.message}")
            return
        await self._record_verified(job, event, state)

    async def _record_verified(self, job: Job, event: Event, state: TaskState) -> None:
        now = time.time()
        if not state.terminal:
            await self.store.finish_event(
                event.id,
                verified=False,
                now=now,
                note=f"the upstream says {state.status!r}; not acted on",
            )
            await self.store.schedule_poll(job.id, now + min(30.0, self.reconcile_after))
            return
        await self.finish(job, state)
        agrees = state.status == event.status
        note = None if agrees else f"the upstream says {state.status!r}; acted on that"
        await self.store.finish_event(event.id, verified=agrees, note=note, now=now)

    # ---- reconciliation --------------------------------------------------------------------

    async def reconcile(self, job: Job) -> None:
        """Polls a job whose callback is overdue; finishes it when the upstream says it ended.
        Whatever goes wrong, the job is polled again later, never in a tight loop."""
        try:
            await self._reconcile(job)
        except Exception:
            log.exception("job %s could not be reconciled", job.id)
            await self.store.schedule_poll(job.id, time.time() + self._poll_interval())

    async def _reconcile(self, job: Job) -> None:
        if not job.upstream_task_id:
            return
        await self.poll_limiter.acquire()
        try:
            state = await self.upstream.status(job.upstream_task_id)
        except TaskhookError as exc:  # refused (404: unknown task), unavailable, ...
            log.info("job %s: poll failed: %s", job.id, exc.message)
            if isinstance(exc, UpstreamUnavailable):
                self.poll_limiter.pause(exc.retry_after or 5.0)
            await self.store.schedule_poll(job.id, time.time() + self._poll_interval())
            return
        if not state.terminal:
            await self.store.schedule_poll(job.id, time.time() + self._poll_interval())
            return
        payload: dict[str, Any] = {"task_id": state.task_id, "status": state.status}
        if state.output is not None:
            payload["output"] = state.output
        if state.error:
            payload["error_message"] = state.error
        await self.store.record_poll(job.id, state.task_id, state.status, payload, time.time())
        await self.finish(job, state)

    def _poll_interval(self) -> float:
        return min(300.0, max(1.0, self.reconcile_after / 4))

    # ---- steps -----------------------------------------------------------------------------

    async def run_step(self, claimed: Claimed) -> None:
        step, job = claimed.step, claimed.job
        bound = pipeline.find_step(self.config.rules, step.rule, step.position)
        if bound is None or bound.handler_name != step.handler or job is None:
            await self.store.step_failed(
                step, "the rule or handler is no longer configured", None, time.time()
            )
            return
        context = StepContext(
            context=pipeline.context(job, claimed.prior),
            templates=bound.templates,
            services=self.services,
            step_id=step.id,
            attempt=step.attempts,
            idempotency_key=step_key(step),
        )
        try:
            result = await self._run_with_heartbeat(step, bound.handler.run(context))
        except HandlerFailed as exc:
            await self._step_failed(step, bound.retry, str(exc), exc.retryable, exc.retry_after)
            return
        except asyncio.CancelledError:  # shutting down: give the step back, it runs next start
            await asyncio.shield(self.store.release_step(step, time.time()))
            raise
        except Exception as exc:  # a handler bug must not stop the worker
            log.exception("step %s (%s) crashed", step.id, step.handler)
            await self._step_failed(step, bound.retry, f"{type(exc).__name__}: {exc}", True, None)
            return
        if not await self.store.step_succeeded(step, result, time.time()):
            log.warning("step %s lost its lease while running; its result is ignored", step.id)
            return
        self.metrics.steps.labels(step.handler, "succeeded").inc()
        self.notify("steps")

    async def _run_with_heartbeat(self, step: Step, work: Any) -> dict[str, Any]:
        async def beat() -> None:
            while True:
                await asyncio.sleep(LEASE_SECONDS / 3)
                await self.store.heartbeat(step, time.time() + LEASE_SECONDS)

        beater = asyncio.create_task(beat())
        try:
            async with asyncio.timeout(STEP_TIMEOUT_SECONDS):
                return await work
        except TimeoutError as exc:
            raise HandlerFailed("the step took longer than 30 minutes") from exc
        finally:
            beater.cancel()

    async def _step_failed(
        self, step: Step, retry: Any, error: str, retryable: bool, retry_after: float | None
    ) -> None:
        now = time.time()
        age = now - (step.first_attempt_at or now)
        if retryable and step.attempts < retry.max_attempts and age < seconds(retry.max_age):
            delay = max(retry_after or 0.0, backoff(step.attempts, cap=600))
            await self.store.step_failed(step, error, now + delay, now)
            self.metrics.steps.labels(step.handler, "retrying").inc()
        else:
            await self.store.step_failed(step, error, None, now)
            self.metrics.steps.labels(step.handler, "dead").inc()
            log.warning(
                "step %s (%s of rule %s) is dead: %s", step.id, step.handler, step.rule, error
            )
