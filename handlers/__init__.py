"""Handler types: one module each, registered through the entry-point group ``taskhook.handlers``.

A handler type is a class with:

- ``type_name``: the ``type:`` users write in YAML;
- ``Config``: a msgspec Struct of its options (unknown keys are config errors);
- ``templates``: the names of ``Config`` fields that are Jinja2 templates;
- ``result_sample``: the shape of its result, so later steps' templates are checked at load;
- ``async run(step) -> dict``: does the work once and returns a small JSON-ready result, or
  raises ``HandlerFailed``.

Built-in types are registered exactly like third-party ones (see ``pyproject.toml``).
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Any, ClassVar

import msgspec

from service.templates import TemplateError, render_tree

ENTRY_POINT_GROUP = "taskhook.handlers"
log = logging.getLogger("taskhook")


class HandlerFailed(Exception):
    """A step failed. ``retryable=False`` makes it dead at once (retrying cannot help)."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class StepContext:
    """What one run of one step sees: the template context, its templates and shared services."""

    def __init__(
        self,
        *,
        context: dict[str, Any],
        templates: dict[str, Any],
        services: Any,
        step_id: int,
        attempt: int,
        idempotency_key: str,
    ) -> None:
        self.context = context
        self.templates = templates
        self.services = services
        self.step_id = step_id
        self.attempt = attempt
        self.idempotency_key = idempotency_key

    def render(self, field: str, **extra: Any) -> Any:
        """Renders the template field ``field`` with the step's context plus ``extra`` names."""
        context = {**self.context, **extra} if extra else self.context
        try:
            return render_tree(self.templates[field], context)
        except TemplateError as exc:  # e.g. a job without the input key a template names
            raise HandlerFailed(f"template {field!r}: {exc}", retryable=False) from exc

    def has(self, field: str) -> bool:
        return self.templates.get(field) is not None


class Handler:
    type_name: ClassVar[str] = ""
    Config: ClassVar[type[msgspec.Struct]]
    templates: ClassVar[tuple[str, ...]] = ()
    result_sample: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: msgspec.Struct) -> None:
        self.config = config

    @classmethod
    def check(cls, config: Any, rendered: dict[str, Any], allow_unknown_models: bool) -> list[str]:
        """Problems with the template fields rendered against a sample context, found when
        the config loads (``"field: what is wrong"``); none by default."""
        return []

    async def run(self, step: StepContext) -> dict[str, Any]:
        raise NotImplementedError


def load_handler_types() -> dict[str, type[Handler]]:
    """Every installed handler type, by its YAML ``type`` name."""
    types: dict[str, type[Handler]] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            types[entry.name] = entry.load()
        except Exception as exc:  # a broken plugin must not take the built-ins down with it
            log.warning(
                "handler type %r (%s) could not be loaded: %s", entry.name, entry.value, exc
            )
    return types
