"""Jinja2 templates of handler configs: sandboxed, strict about undefined names.

A *tree* is a config value in which every string is a compiled template: strings, lists and
mappings are walked; other values pass through unchanged (so ``duration: 8`` stays an int).
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment


class _Environment(SandboxedEnvironment):
    """Keys win over dict methods: ``steps.archive.keys`` is the step's ``keys``, not a method."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


ENV = _Environment(undefined=StrictUndefined, autoescape=False)

__all__ = [
    "ANY_STEPS",
    "ENV",
    "AnyKeys",
    "TemplateError",
    "compile_tree",
    "render_tree",
    "sample_context",
]


def compile_tree(value: Any) -> Any:
    """Compiles every string inside ``value``; raises ``TemplateSyntaxError``."""
    if isinstance(value, str):
        return ENV.from_string(value)
    if isinstance(value, dict):
        return {key: compile_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [compile_tree(item) for item in value]
    return value


def render_tree(tree: Any, context: dict[str, Any]) -> Any:
    if hasattr(tree, "render"):
        return tree.render(context)
    if isinstance(tree, dict):
        return {key: render_tree(item, context) for key, item in tree.items()}
    if isinstance(tree, list):
        return [render_tree(item, context) for item in tree]
    return tree


class AnyKeys(dict):
    """A mapping that has every key: stands in for user data (job input, metadata)."""

    def __missing__(self, key: str) -> str:
        return f"sample-{key}"


class _AnySteps(dict):
    """Stands in for ``steps`` where the earlier steps are not known (an unused handler)."""

    def __missing__(self, key: str) -> AnyKeys:
        return AnyKeys()


ANY_STEPS = _AnySteps()

_SAMPLE_OUTPUT = {
    "url": "https://cdn.example.com/sample/output.png",
    "field": "image_url",
    "index": 0,
    "kind": "image",
    "filename": "output.png",
}


def sample_context(step_results: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A context with every documented name, used to check templates when the config loads."""
    job = {
        "id": "job_sample",
        "model": "google/nano-banana",
        "input": AnyKeys(),
        "tags": ["sample"],
        "metadata": AnyKeys(),
        "status": "completed",
        "upstream_task_id": "task_sample",
        "parent_id": None,
        "depth": 0,
        "created_at": "2026-01-01T00:00:00Z",
    }
    event = {"status": "completed", "error": None, "received_at": "2026-01-01T00:00:00Z"}
    return {
        "job": job,
        "event": event,
        "outputs": [_SAMPLE_OUTPUT],
        "output": _SAMPLE_OUTPUT,
        "steps": step_results if isinstance(step_results, _AnySteps) else dict(step_results or {}),
    }
