"""A third-party handler type, installed as a package, used from YAML like a built-in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import base_config

PLUGIN = Path(__file__).resolve().parents[1] / "plugin"


def test_plugin_handler_type_loads_from_its_entry_point(sim, tmp_path, service_factory):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(PLUGIN)],
                   check=True, timeout=180, cwd=tmp_path)
    env = {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    log = tmp_path / "echo.log"
    config = base_config(sim.url, tmp_path, handlers={
        "echo": {"type": "echo", "path": str(log),
                 "message": "{{ job.model }} {{ event.status }} {{ outputs | length }}"}},
        rules=[{"name": "plugin", "handlers": ["echo"]}])
    service = service_factory(config, env=env)
    job = service.wait_job(service.submit().json()["id"])
    assert job["runs"][0]["status"] == "succeeded"
    assert job["runs"][0]["result"] == {"written": "google/nano-banana completed 1"}
    assert log.read_text() == "google/nano-banana completed 1\n"

    def check(extra_env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "service.cli", "check", "-c",
                               str(service.config_path)], capture_output=True, text=True,
                              env={**os.environ, **extra_env}, timeout=60)

    assert check(env).returncode == 0
    without = check({})
    assert without.returncode == 1 and "unknown handler type 'echo'" in without.stderr
