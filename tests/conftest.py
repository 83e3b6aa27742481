"""Shared fixtures: real servers on 127.0.0.1 (simulator, capture endpoints, the service)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from service.security import callback_token
from service.simulator import Simulator, SimulatorSettings
from tests.support import ServerThread, capture_app, free_port

API_KEY = "test-api-key-0123456789"
SECRET = "test-secret-0123456789-0123456789-abcdef"
SIM_KEY = "sim-test-key"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test depends on the developer's shell: taskhook's own variables are removed."""
    for name in list(os.environ):
        if name.startswith(("TASKHOOK_", "UNIFICALLY_", "SLACK_")):
            monkeypatch.delenv(name)


def fast_settings(**overrides: Any) -> SimulatorSettings:
    values: dict[str, Any] = {"api_key": SIM_KEY, "pending_seconds": 0.05,
                              "processing_seconds": 0.15, "callback_retry_delays": (0.2, 0.4),
                              "callback_timeout": 5.0, "seed": 7}
    values.update(overrides)
    return SimulatorSettings(**values)


class SimulatorServer:
    def __init__(self, simulator: Simulator, server: ServerThread) -> None:
        self.simulator = simulator
        self.url = server.url
        self.http = httpx.Client(base_url=server.url, timeout=10)

    def configure(self, **settings: Any) -> None:
        self.http.put("/_sim/settings", json=settings).raise_for_status()

    def stats(self) -> dict[str, int]:
        return self.http.get("/_sim/stats").json()

    def tasks(self) -> list[dict[str, Any]]:
        return self.http.get("/_sim/tasks").json()

    def complete(self, task_id: str, **body: Any) -> None:
        self.http.post(f"/_sim/tasks/{task_id}/complete", json=body or None).raise_for_status()


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    simulator = Simulator(fast_settings())
    with ServerThread(simulator.create_app()) as server:
        handle = SimulatorServer(simulator, server)
        yield handle
        handle.http.close()


class Capture:
    """A local HTTP endpoint that records posts (stands in for Slack, Discord, webhooks)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = statuses or []
        app, self.received = capture_app(self._status)
        self.server = ServerThread(app)
        self.url = self.server.url

    def _status(self, n: int) -> int:
        return self.statuses[n] if n < len(self.statuses) else 200

    def bodies(self, path: str | None = None) -> list[Any]:
        import json

        return [json.loads(r["body"]) for r in self.received
                if r["status"] == 200 and (path is None or r["path"] == path)]


@pytest.fixture
def capture() -> Iterator[Capture]:
    handle = Capture()
    with handle.server:
        yield handle


class Service:
    """``taskhook serve`` as a subprocess on a free port, with its own config and database."""

    def __init__(self, workdir: Path, config: dict[str, Any],
                 env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.env = {**os.environ, **(env or {})}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config["server"].update(port=self.port, public_url=self.url)
        self.config_path = workdir / "taskhook.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "service.log"
        self.process: subprocess.Popen | None = None
        self.http = httpx.Client(base_url=self.url, timeout=15,
                                 headers={"Authorization": f"Bearer {API_KEY}"})

    def start(self) -> Service:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve", "-c", str(self.config_path)],
                cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"taskhook exited:\n{self.logs()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"taskhook did not become ready:\n{self.logs()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=20)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def hook_url(self, job_id: str, token: str | None = None) -> str:
        return f"/hooks/{job_id}/{token or callback_token(SECRET, job_id)}"

    def submit(self, model: str = "google/nano-banana", **body: Any) -> httpx.Response:
        input_ = body.pop("input", {"prompt": "a red fox", "aspect_ratio": "1:1"})
        headers = body.pop("headers", {})
        return self.http.post("/v1/jobs", json={"model": model, "input": input_, **body},
                              headers=headers)

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/jobs/{job_id}")
        response.raise_for_status()
        return response.json()

    def wait_job(self, job_id: str, timeout: float = 20.0, settled: bool = True) -> dict:
        """Waits until the job has ended and (with ``settled``) every step has settled."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            ended = job["status"] in ("completed", "failed", "rejected")
            steps_done = all(r["status"] in ("succeeded", "dead") for r in job["runs"])
            if ended and (steps_done or not settled):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job did not settle in {timeout}s: {job}")
            time.sleep(0.05)


def base_config(sim_url: str, workdir: Path, **sections: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "server": {"public_url": "http://127.0.0.1:1", "api_keys": [API_KEY],
                   "secret": SECRET},
        "storage": {"url": f"sqlite:///{workdir / 'taskhook.db'}"},
        "upstream": {"base_url": sim_url, "api_key": SIM_KEY, "reconcile_after": "1s"},
        "security": {"allow_private_networks": True},
        "handlers": {},
        "rules": [],
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    return config


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Service] = []

    def make(config: dict[str, Any], env: dict[str, str] | None = None) -> Service:
        service = Service(tmp_path, config, env)
        started.append(service)
        return service.start()

    yield make
    for service in started:
        service.stop()
        service.http.close()
