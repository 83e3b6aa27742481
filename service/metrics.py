"""Prometheus metrics, on a registry of the app's own (so several apps can share a process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.callbacks = Counter(
            "taskhook_callbacks_total",
            "Callbacks received, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.jobs = Counter(
            "taskhook_jobs_total",
            "Job status changes, by new status",
            ["status"],
            registry=self.registry,
        )
        self.steps = Counter(
            "taskhook_steps_total",
            "Step outcomes, by handler and outcome",
            ["handler", "outcome"],
            registry=self.registry,
        )

        self._callback_children: dict[str, Any] = {}

    def callback(self, outcome: str) -> None:
        """Counts a callback (the labelled child is looked up once per outcome)."""
        child = self._callback_children.get(outcome)
        if child is None:
            child = self._callback_children[outcome] = self.callbacks.labels(outcome)
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
