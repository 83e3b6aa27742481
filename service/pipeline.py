"""Rules meet results: which rules match a finished job, and what a step's templates see."""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime
from typing import Any

from service.config import BoundStep, MatchConfig, Rule
from service.store import Job, PlannedStep


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def matches(match: MatchConfig, job: Job, status: str) -> bool:
    statuses = _as_list(match.status)
    if statuses and status not in statuses:
        return False
    models = _as_list(match.model)
    if models and not any(fnmatch.fnmatchcase(job.model, pattern) for pattern in models):
        return False
    if not set(match.tags) <= set(job.tags):
        return False
    return all(job.metadata.get(key) == value for key, value in match.metadata.items())


def plan(rules: list[Rule], job: Job, status: str) -> list[PlannedStep]:
    """One planned step per step of every rule that matches the job's result."""
    return [
        PlannedStep(rule=rule.name, position=position, handler=step.handler_name)
        for rule in rules
        if matches(rule.match, job, status)
        for position, step in enumerate(rule.steps)
    ]


def find_step(rules: list[Rule], rule_name: str, position: int) -> BoundStep | None:
    for rule in rules:
        if rule.name == rule_name and position < len(rule.steps):
            return rule.steps[position]
    return None


def job_view(job: Job) -> dict[str, Any]:
    """The template ``job``: the fields users script against."""
    return {
        "id": job.id,
        "model": job.model,
        "input": job.input,
        "tags": job.tags,
        "metadata": job.metadata,
        "status": job.status,
        "upstream_task_id": job.upstream_task_id,
        "parent_id": job.parent_id,
        "depth": job.depth,
        "created_at": iso(job.created_at),
    }


def context(job: Job, steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The template context of a step of a finished job."""
    return {
        "job": job_view(job),
        "event": {"status": job.status, "error": job.error, "received_at": iso(job.finished_at)},
        "outputs": job.outputs,
        "steps": steps,
    }
