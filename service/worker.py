"""The background loops: submit, verify callbacks, reconcile, run steps.

Each loop claims due work from the store, hands it to ``Engine`` and sleeps until woken (new
work was stored) or until its poll interval passes. ``drain`` runs every loop until nothing
is due, for tests that want no sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from service.config import seconds
from service.engine import Engine

log = logging.getLogger("taskhook")

POLL_INTERVAL = 0.5
# Acknowledging a callback is what the upstream waits for (about ten seconds); verifying it
# can wait. While at least RECEIVING_BUSY callbacks are being received at once, the receiver
# is saturated (a burst): verification then takes YIELD_BATCH events per YIELD_SECONDS
# (a trickle, so it never stops) instead of EVENT_BATCH at a time, and catches up after.
RECEIVING_BUSY = 8
EVENT_BATCH = 32
YIELD_BATCH = 8
YIELD_SECONDS = 0.25
RETENTION_INTERVAL = 3600.0


class Workers:
    def __init__(self, engine: Engine, step_concurrency: int = 4) -> None:
        self.engine = engine
        self.store = engine.store
        self.step_concurrency = step_concurrency
        self.tasks: list[asyncio.Task] = []
        self.stopping = asyncio.Event()

    async def start(self) -> None:
        # One process per database: a step left running was running in a process now gone.
        await self.store.recover_steps(time.time(), everything=True)
        ambiguous = await self.store.recover_inflight()
        if ambiguous:
            log.warning(
                "%d job(s) were being submitted when taskhook stopped; they are marked "
                "ambiguous and will not be resent blindly",
                ambiguous,
            )
        loops: list[tuple[str, Callable[[], Awaitable[int]]]] = [
            ("submit", self.submit_once),
            ("events", self.events_once),
            ("polls", self.polls_once),
        ]
        loops += [("steps", self.step_once)] * self.step_concurrency
        self.tasks = [
            asyncio.create_task(self._loop(name, fn), name=f"taskhook-{name}") for name, fn in loops
        ]
        self.tasks.append(asyncio.create_task(self._recover_loop(), name="taskhook-recover"))
        self.tasks.append(asyncio.create_task(self._retention_loop(), name="taskhook-retention"))

    async def stop(self, grace: float = 10.0) -> None:
        self.stopping.set()
        for event in self.engine.wake.values():
            event.set()
        _, pending = await asyncio.wait(self.tasks, timeout=grace) if self.tasks else ((), ())
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _loop(self, name: str, once: Callable[[], Awaitable[int]]) -> None:
        wake = self.engine.wake[name]
        while not self.stopping.is_set():
            wake.clear()
            try:
                done = await once()
            except Exception:
                log.exception("the %s loop failed; retrying", name)
                done = 0
            if done == 0 and not self.stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), POLL_INTERVAL)

    async def _recover_loop(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 15)
            if await self.store.recover_steps(time.time()):
                self.engine.notify("steps")

    async def _retention_loop(self) -> None:
        retention = seconds(self.engine.config.storage.retention)
        delay = 1.0  # once soon after start, then every hour
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            if not self.stopping.is_set():
                pruned = await self.prune(time.time() - retention)
                if pruned:
                    log.info("retention: pruned %d finished job(s)", pruned)
            delay = RETENTION_INTERVAL

    async def prune(self, before: float) -> int:
        """Deletes finished jobs that ended before ``before``, in small transactions."""
        total = 0
        while batch := await self.store.prune(before, 500):
            total += batch
        return total

    async def submit_once(self) -> int:
        jobs = await self.store.claim_submissions(time.time(), 16)
        await asyncio.gather(*(self.engine.submit(job) for job in jobs))
        return len(jobs)

    async def events_once(self) -> int:
        limit = EVENT_BATCH
        if self.engine.receiving >= RECEIVING_BUSY and not self.stopping.is_set():
            await asyncio.sleep(YIELD_SECONDS)
            limit = YIELD_BATCH
        events = await self.store.pending_events(time.time(), limit)
        await asyncio.gather(*(self.engine.process_event(event, job) for event, job in events))
        return len(events)

    async def polls_once(self) -> int:
        jobs = await self.store.due_polls(time.time(), 16)
        await asyncio.gather(*(self.engine.reconcile(job) for job in jobs))
        return len(jobs)

    async def step_once(self) -> int:
        claimed = await self.store.claim_step(time.time(), time.time() + 60)
        if claimed is None:
            return 0
        await self.engine.run_step(claimed)
        return 1

    async def drain(self, timeout: float = 30.0) -> None:
        """Runs every loop until none has due work (tests use this instead of sleeping)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = sum(
                [
                    await self.submit_once(),
                    await self.events_once(),
                    await self.polls_once(),
                    await self.step_once(),
                ]
            )
            if done == 0:
                return
        raise TimeoutError("work was still due after the drain timeout")
