"""``followup``: starts the next model with this job's outputs; a child job with lineage.

The child is recorded (with an idempotency key derived from the step) before anything is
sent; the submit loop then submits it like any job. A retried step finds the child it
recorded and never creates a second one, and a create request that timed out after it was
sent is never resent blindly: the child's callback URL carries the child's id, so its
callback adopts the task the upstream created.

Limits: ``max_depth`` (default 5) stops a rule from feeding itself forever;
``budget.max_chain_cost`` prices each follow-up with a dry run first and refuses it when the
chain's priced cost would go over.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from handlers import Handler, HandlerFailed, StepContext
from service import catalog
from service.errors import BudgetExceeded, RequestError, TaskhookError


class Budget(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    max_chain_cost: Annotated[float, Meta(gt=0)]


class FollowupConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    model: Annotated[str, Meta(min_length=1)]
    input: dict[str, Any] = {}
    tags: list[str] = []
    metadata: dict[str, Any] = {}
    max_depth: Annotated[int, Meta(ge=1, le=50)] = 5
    budget: Budget | None = None


def _templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def input_problems(
    config: FollowupConfig, rendered: dict[str, Any], allow_unknown: bool
) -> list[str]:
    """Catalog problems of a rendered input; values that come from templates are only known
    at run time, so problems at their paths are left to the run."""
    if catalog.get(config.model) is None:
        if allow_unknown:
            return []
        hint = catalog.suggest(config.model)
        return [
            f"model: unknown model {config.model!r}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
        ]
    dynamic = [f"input.{key}" for key, value in config.input.items() if _templated(value)]
    return [
        f"{p.path}: {p.message}"
        for p in catalog.validate(config.model, rendered)
        if not any(p.path == d or p.path.startswith((d + ".", d + "[")) for d in dynamic)
    ]


class FollowupHandler(Handler):
    type_name = "followup"
    Config = FollowupConfig
    templates = ("input", "metadata")
    result_sample = {"job_id": "job_sample", "model": "sample", "depth": 1, "cost": 0.0}

    @classmethod
    def check(
        cls, config: FollowupConfig, rendered: dict[str, Any], allow_unknown_models: bool
    ) -> list[str]:
        return input_problems(config, rendered["input"], allow_unknown_models)

    async def run(self, step: StepContext) -> dict[str, Any]:
        engine = step.services.engine
        parent = step.context["job"]
        key = f"followup {step.idempotency_key}"  # a space: no client key can look like it
        existing = await engine.store.job_by_key(key)
        if existing is not None:  # an earlier attempt recorded it: never a second child
            return self._result(existing.id, existing.depth, existing.cost)
        if parent["depth"] + 1 > self.config.max_depth:
            raise HandlerFailed(
                f"chain depth limit reached: job {parent['id']} is at depth "
                f"{parent['depth']} and max_depth is {self.config.max_depth}",
                retryable=False,
            )
        input = step.render("input")
        self._validate(input, step.services.config.upstream.allow_unknown_models)
        cost = await self._price(engine, input)
        metadata = {**parent["metadata"], **step.render("metadata")}
        budget = self.config.budget
        try:
            child = await engine.spawn_child(
                parent,
                model=self.config.model,
                input=input,
                tags=list(self.config.tags),
                metadata=metadata,
                key=key,
                cost=cost,
                max_chain_cost=budget.max_chain_cost if budget else None,
            )
        except BudgetExceeded as exc:
            raise HandlerFailed(exc.message, retryable=False) from exc
        return self._result(child.id, child.depth, cost)

    def _result(self, job_id: str, depth: int, cost: float | None) -> dict[str, Any]:
        return {"job_id": job_id, "model": self.config.model, "depth": depth, "cost": cost}

    def _validate(self, input: dict[str, Any], allow_unknown: bool) -> None:
        problems = input_problems(FollowupConfig(model=self.config.model), input, allow_unknown)
        if problems:
            raise HandlerFailed(
                f"the follow-up input is not valid for {self.config.model}: " + "; ".join(problems),
                retryable=False,
            )

    async def _price(self, engine: Any, input: dict[str, Any]) -> float | None:
        budget = self.config.budget
        if budget is None:
            return None
        try:
            cost = await engine.price(self.config.model, input)
        except RequestError as exc:
            raise HandlerFailed(f"the dry run was refused: {exc.message}", retryable=False) from exc
        except TaskhookError as exc:
            raise HandlerFailed(f"the dry run failed: {exc.message}") from exc
        return cost
