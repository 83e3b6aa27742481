"""Reliability: ambiguous submissions, replay by filter, retention, clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from tests.conftest import API_KEY, Capture, base_config
from tests.support import wait_until


def test_create_that_timed_out_after_sending_is_adopted_not_resent(sim, tmp_path,
                                                                   service_factory):
    sim.configure(create_slow_rate=1.0, create_slow_seconds=2.0, processing_seconds=3.0)
    service = service_factory(base_config(sim.url, tmp_path, upstream={"timeout": "500ms"}))
    response = service.submit()
    assert response.status_code == 202
    assert response.json()["submission"] == "ambiguous"
    job = service.wait_job(response.json()["id"])
    assert job["status"] == "completed" and job["upstream_task_id"]
    assert [e["source"] for e in job["events"]] == ["callback"]
    assert sim.stats()["tasks_created"] == 1


def test_ambiguous_job_is_resent_only_when_forced(sim, tmp_path, service_factory):
    sim.configure(create_slow_rate=1.0, create_slow_seconds=2.0, drop_rate=1.0)
    service = service_factory(base_config(sim.url, tmp_path, upstream={"timeout": "500ms"}))
    job_id = service.submit().json()["id"]
    time.sleep(2.5)  # the slow answer and the dropped callback: nothing will ever come
    assert service.job(job_id)["submission"] == "ambiguous"
    refused = service.http.post(f"/v1/jobs/{job_id}/replay")
    assert refused.status_code == 409 and "force" in refused.json()["detail"]
    assert sim.stats()["tasks_created"] == 1
    sim.configure(create_slow_rate=0.0, drop_rate=0.0)
    forced = service.http.post(f"/v1/jobs/{job_id}/replay", json={"force": True})
    assert forced.status_code == 202 and forced.json()["resubmitted"] is True
    assert service.wait_job(job_id)["status"] == "completed"
    assert sim.stats()["tasks_created"] == 2


def test_operator_attaches_the_task_of_an_ambiguous_job(sim, tmp_path, service_factory):
    sim.configure(create_slow_rate=1.0, create_slow_seconds=2.0, drop_rate=1.0)
    service = service_factory(base_config(sim.url, tmp_path, upstream={"timeout": "500ms"}))
    job_id = service.submit().json()["id"]
    (task,) = wait_until(lambda: [t for t in sim.tasks() if t["status"] == "completed"])
    env = {**os.environ, "TASKHOOK_API_KEY": API_KEY}
    adopt = subprocess.run([sys.executable, "-m", "service.cli", "adopt", job_id, task["id"],
                            "--url", service.url], env=env, capture_output=True, text=True,
                           timeout=60)
    assert adopt.returncode == 0, adopt.stderr
    job = service.wait_job(job_id)
    assert job["status"] == "completed" and job["upstream_task_id"] == task["id"]
    assert [e["source"] for e in job["events"]] == ["poll"]
    again = service.http.post(f"/v1/jobs/{job_id}/adopt", json={"task_id": "other"})
    assert again.status_code == 409
    assert sim.stats()["tasks_created"] == 1


def test_rate_limited_create_is_retried_after_retry_after(sim, tmp_path, service_factory):
    sim.configure(create_429_rate=1.0)
    service = service_factory(base_config(sim.url, tmp_path))
    response = service.submit()
    assert response.status_code == 202 and response.json()["submission"] == "waiting"
    assert "429" in response.json()["error"]
    sim.configure(create_429_rate=0.0)
    job = service.wait_job(response.json()["id"], timeout=30)
    assert job["status"] == "completed" and job["error"] is None
    assert sim.stats()["tasks_created"] == 1


def test_dead_steps_are_replayed_by_filter(sim, tmp_path, service_factory):
    receiver = Capture(statuses=[404, 404])
    with receiver.server:
        service = service_factory(base_config(sim.url, tmp_path, handlers={
            "forward": {"type": "webhook", "url": f"{receiver.url}/in"}},
            rules=[{"name": "fwd", "handlers": ["forward"]}]))
        ids = [service.submit().json()["id"] for _ in range(2)]
        for job_id in ids:
            run = service.wait_job(job_id)["runs"][0]
            assert run["status"] == "dead" and "404" in run["last_error"]
        other = service.submit().json()["id"]
        assert service.wait_job(other)["runs"][0]["status"] == "succeeded"
        env = {**os.environ, "TASKHOOK_API_KEY": API_KEY}
        cli = subprocess.run([sys.executable, "-m", "service.cli", "replay", "--status", "dead",
                              "--since", "1h", "--url", service.url], env=env,
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert cli.stdout.startswith("2 job(s), 2 step(s) scheduled")
        for job_id in ids:
            assert service.wait_job(job_id)["runs"][0]["status"] == "succeeded"
        assert len(receiver.bodies("/in")) == 3
        again = service.http.post("/v1/replay", json={"status": "dead"})
        assert again.json() == {"jobs": [], "steps_scheduled": 0}
        bad = service.http.post("/v1/replay", json={"status": "nope"})
        assert bad.status_code == 400 and "status" in bad.text


def test_finished_jobs_are_pruned_after_the_retention(sim, tmp_path, service_factory):
    service = service_factory(base_config(sim.url, tmp_path, storage={"retention": "1s"}))
    job_id = service.wait_job(service.submit().json()["id"])["id"]
    service.stop()
    time.sleep(1.2)
    service.start()
    wait_until(lambda: service.http.get(f"/v1/jobs/{job_id}").status_code == 404, timeout=10)
    assert service.http.get("/v1/jobs").json()["data"] == []


def test_sigterm_stops_cleanly_and_the_next_start_resumes(sim, tmp_path, service_factory):
    service = service_factory(base_config(sim.url, tmp_path))
    sim.configure(processing_seconds=3)
    job_id = service.submit().json()["id"]
    assert service.process is not None
    service.process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal (exit status -SIGTERM)
    assert service.process.wait(timeout=20) == -signal.SIGTERM
    assert "Application shutdown complete" in service.logs()
    assert "Traceback" not in service.logs()
    service.start()
    assert service.wait_job(job_id, timeout=30)["status"] == "completed"
    assert httpx.get(f"{service.url}/readyz").json() == {"status": "ready"}
