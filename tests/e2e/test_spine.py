"""The spine end to end: the service as a subprocess, the simulator as its upstream, capture
endpoints standing in for chat and webhooks, a real SQLite file. No mocks."""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY, base_config
from tests.support import wait_until


def rules_config(sim: Any, capture: Any, tmp_path: Path, **sections: Any) -> dict[str, Any]:
    return base_config(
        sim.url, tmp_path,
        handlers={
            "files": {"type": "local", "directory": str(tmp_path / "files")},
            "team": {"type": "slack", "webhook_url": f"{capture.url}/slack"},
            "forward": {"type": "webhook", "url": f"{capture.url}/webhook"},
            "ops": {"type": "discord", "webhook_url": f"{capture.url}/discord"},
        },
        rules=[
            {"name": "keep", "match": {"status": "completed"},
             "handlers": ["files", {"handler": "team", "with": {
                 "text": "saved {{ steps.files.keys | join(' ') }} for {{ job.model }}"}},
                 "forward"]},
            {"name": "alarm", "match": {"status": "failed"}, "handlers": ["ops"]},
        ],
        **sections,
    )


@pytest.fixture
def service(sim, capture, tmp_path, service_factory):
    return service_factory(rules_config(sim, capture, tmp_path))


def test_job_runs_end_to_end(service, sim, capture, tmp_path):
    response = service.submit(tags=["keep"], metadata={"team": "video"})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["upstream_task_id"]
    job = service.wait_job(created["id"])
    assert job["status"] == "completed"
    assert [e["verified"] for e in job["events"]] == [True]
    assert [(r["rule"], r["handler"], r["status"]) for r in job["runs"]] == [
        ("keep", "files", "succeeded"), ("keep", "team", "succeeded"),
        ("keep", "forward", "succeeded")]
    (output,) = job["outputs"]
    assert output["kind"] == "image" and output["field"] == "image_url"
    copied = tmp_path / "files" / job["id"] / output["filename"]
    served = httpx.get(output["url"]).content
    assert copied.read_bytes() == served and served.startswith(b"\x89PNG")
    files = job["runs"][0]["result"]
    assert files["sha256"] == [hashlib.sha256(served).hexdigest()]
    assert capture.bodies("/slack") == [
        {"text": f"saved {job['id']}/{output['filename']} for google/nano-banana"}]
    (forwarded,) = capture.bodies("/webhook")
    assert forwarded["type"] == "job.completed" and forwarded["job"]["id"] == job["id"]
    assert forwarded["job"]["metadata"] == {"team": "video"}
    assert capture.bodies("/discord") == []


def test_duplicate_callbacks_run_rules_once(service, sim, capture):
    sim.configure(duplicate_rate=1.0)
    job_id = service.submit().json()["id"]
    job = wait_until(lambda: (j := service.job(job_id)) and len(j["events"]) == 2 and j)
    job = service.wait_job(job_id)
    assert [e["duplicate"] for e in job["events"]] == [False, True]
    assert len(job["runs"]) == 3
    assert len(capture.bodies("/slack")) == 1
    assert len(capture.bodies("/webhook")) == 1


def test_dropped_callback_is_reconciled(service, sim, capture):
    sim.configure(drop_rate=1.0)
    job_id = service.submit().json()["id"]
    job = service.wait_job(job_id)
    assert job["status"] == "completed"
    assert [(e["source"], e["verified"]) for e in job["events"]] == [("poll", True)]
    assert len(capture.bodies("/slack")) == 1


def test_late_callback_after_reconciliation_is_a_duplicate(service, sim, capture):
    sim.configure(late_rate=1.0, late_seconds=2.5)
    job_id = service.submit().json()["id"]
    service.wait_job(job_id)
    job = wait_until(lambda: (j := service.job(job_id)) and len(j["events"]) == 2 and j,
                     timeout=10)
    assert [(e["source"], e["duplicate"]) for e in job["events"]] == [
        ("poll", False), ("callback", True)]
    assert len(capture.bodies("/slack")) == 1


def test_failed_task_runs_failure_rules(service, sim, capture):
    sim.configure(fail_rate=1.0)
    job_id = service.submit().json()["id"]
    job = service.wait_job(job_id)
    assert job["status"] == "failed" and job["error"]
    assert [(r["rule"], r["status"]) for r in job["runs"]] == [("alarm", "succeeded")]
    (message,) = capture.bodies("/discord")
    (embed,) = message["embeds"]
    assert embed["title"] == f"❌ google/nano-banana failed: {job_id}"
    assert embed["fields"] == [{"name": "Reason", "value": job["error"]}]
    assert capture.bodies("/slack") == []


def test_default_chat_messages_show_the_result(sim, capture, tmp_path, service_factory):
    service = service_factory(base_config(sim.url, tmp_path, handlers={
        "team": {"type": "slack", "webhook_url": f"{capture.url}/slack"},
        "ops": {"type": "discord", "webhook_url": f"{capture.url}/discord", "username": "bot"}},
        rules=[{"name": "tell", "handlers": ["team", "ops"]}]))
    job = service.wait_job(service.submit().json()["id"])
    url, name = job["outputs"][0]["url"], job["outputs"][0]["filename"]
    (slack,) = capture.bodies("/slack")
    assert slack["text"] == f"✅ google/nano-banana completed: {job['id']}"
    section, image = slack["blocks"]
    assert f"<{url}|{name}>" in section["text"]["text"]
    assert image == {"type": "image", "image_url": url, "alt_text": name}
    (discord,) = capture.bodies("/discord")
    assert discord["username"] == "bot"
    assert discord["embeds"][0]["image"] == {"url": url}
    assert f"[{name}]({url})" in discord["embeds"][0]["description"]


def _state(service, job_id):
    job = service.job(job_id)
    return job["status"], len(job["events"]), len(job["runs"])


def test_bad_callbacks_are_refused_and_change_nothing(service, sim):
    sim.configure(processing_seconds=30)
    job_id = service.submit().json()["id"]
    before = _state(service, job_id)
    body = {"task_id": "x", "status": "completed", "data": {}}
    hook = service.hook_url(job_id)
    cases = [
        (service.hook_url(job_id, "wrong-token"), {"json": body}, 401),
        (service.hook_url("job_doesnotexist"), {"json": body}, 404),
        (hook, {"content": b"{not json"}, 400),
        (hook, {"json": ["a list"]}, 400),
        (hook, {"json": {"task_id": "x"}}, 400),
        (hook, {"json": {"status": 5}}, 400),
        (hook, {"content": b'{"status": "completed", "pad": "' + b"x" * (1024 * 1024) + b'"}'},
         413),
    ]
    for path, kwargs, expected in cases:
        response = httpx.post(service.url + path, **kwargs)
        assert response.status_code == expected, (path, response.text)
        assert response.json()["detail"]
    assert _state(service, job_id) == before


def test_forged_early_completion_is_not_acted_on(service, sim, capture):
    sim.configure(processing_seconds=60)
    created = service.submit().json()
    job_id, task_id = created["id"], created["upstream_task_id"]
    forged = {"task_id": task_id, "status": "completed",
              "data": {"image_url": "https://evil.example.com/x.png"}}
    response = httpx.post(service.url + service.hook_url(job_id), json=forged)
    assert response.status_code == 200
    job = wait_until(lambda: (j := service.job(job_id))["events"][0]["processed"] and j)
    assert job["status"] == "submitted"
    assert job["events"][0]["verified"] is False
    assert job["runs"] == [] and capture.received == []
    sim.complete(task_id)
    job = service.wait_job(job_id)
    assert job["status"] == "completed"
    assert "evil" not in job["outputs"][0]["url"]
    assert len(capture.bodies("/slack")) == 1


def test_idempotency_key_never_creates_a_second_task(service, sim):
    headers = {"Idempotency-Key": "order-42"}
    first = service.submit(headers=headers)
    second = service.submit(headers=headers)
    assert first.status_code == 201 and second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert sim.stats()["tasks_created"] == 1
    other = service.submit(headers=headers, input={"prompt": "a cat", "aspect_ratio": "1:1"})
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["detail"]
    assert sim.stats()["tasks_created"] == 1


def test_invalid_input_is_refused_before_anything_is_spent(service, sim):
    response = service.submit(input={"prompt": "a fox"})
    assert response.status_code == 422
    assert "input.aspect_ratio" in [p["path"] for p in response.json()["extra"]]
    unknown = service.submit(model="google/nano-banan")
    assert unknown.status_code == 422 and "did you mean" in unknown.json()["detail"]
    extra = service.http.post("/v1/jobs", json={"model": "google/nano-banana", "inptu": {}})
    assert extra.status_code == 400 and "inptu" in extra.text
    assert sim.stats()["tasks_created"] == 0
    assert service.http.get("/v1/jobs").json()["data"] == []


def test_upstream_outage_keeps_the_job_and_submits_later(service, sim):
    sim.configure(create_500_rate=1.0)
    response = service.submit()
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "accepted" and job["upstream_task_id"] is None
    sim.configure(create_500_rate=0.0)
    job = service.wait_job(job["id"], timeout=30)
    assert job["status"] == "completed"
    assert sim.stats()["tasks_created"] == 1


def test_upstream_refusal_is_passed_on(sim, capture, tmp_path, service_factory):
    config = rules_config(sim, capture, tmp_path)
    config["upstream"]["api_key"] = "wrong-upstream-key"
    service = service_factory(config)
    response = service.submit()
    assert response.status_code == 502
    assert "upstream.api_key" in response.json()["detail"]
    (job,) = service.http.get("/v1/jobs").json()["data"]
    assert job["status"] == "rejected"


def test_dry_run_prices_and_creates_nothing(service, sim):
    response = service.submit(dry_run=True)
    assert response.status_code == 200, response.text
    assert response.json()["dry_run"] is True and response.json()["cost"] > 0
    assert sim.stats()["tasks_created"] == 0
    assert service.http.get("/v1/jobs").json()["data"] == []


def test_failed_step_is_retried(sim, tmp_path, service_factory):
    from tests.conftest import Capture

    flaky = Capture(statuses=[500])
    with flaky.server:
        config = rules_config(sim, flaky, tmp_path)
        service = service_factory(config)
        job = service.wait_job(service.submit().json()["id"], timeout=30)
        team = next(r for r in job["runs"] if r["handler"] == "team")
        assert team["status"] == "succeeded" and team["attempts"] == 2
        assert [r["status"] for r in flaky.received if r["path"] == "/slack"] == [500, 200]


def test_replay_reruns_rules_only_when_forced(service, sim, capture):
    job_id = service.submit().json()["id"]
    service.wait_job(job_id)
    response = service.http.post(f"/v1/jobs/{job_id}/replay")
    assert response.status_code == 202 and response.json()["steps_scheduled"] == 0
    forced = service.http.post(f"/v1/jobs/{job_id}/replay", json={"force": True})
    assert forced.json()["steps_scheduled"] == 3
    wait_until(lambda: len(capture.bodies("/slack")) == 2)
    job = service.wait_job(job_id)
    assert sorted({r["generation"] for r in job["runs"]}) == [0, 1]


def test_listing_is_newest_first_and_paginated(service, sim):
    ids = [service.submit(tags=[f"t{i}"]).json()["id"] for i in range(3)]
    page = service.http.get("/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page["data"]] == ids[::-1][:2]
    rest = service.http.get("/v1/jobs", params={"limit": 2, "cursor": page["next_cursor"]})
    assert [j["id"] for j in rest.json()["data"]] == ids[:1]
    assert rest.json()["next_cursor"] is None
    tagged = service.http.get("/v1/jobs", params={"tag": "t1"}).json()["data"]
    assert [j["id"] for j in tagged] == [ids[1]]
    bad = service.http.get("/v1/jobs", params={"status": "nope"})
    assert bad.status_code == 400 and "status" in bad.json()["detail"]


def test_api_requires_a_valid_key(service):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": API_KEY}):
        response = httpx.get(f"{service.url}/v1/jobs", headers=headers)
        assert response.status_code == 401
        assert "API key" in response.json()["detail"]
    assert httpx.get(f"{service.url}/healthz").status_code == 200
    schema = httpx.get(f"{service.url}/schema/openapi.json").json()
    assert "/v1/jobs" in schema["paths"]


def test_nothing_is_lost_when_the_service_is_killed(sim, capture, tmp_path, service_factory):
    config = rules_config(sim, capture, tmp_path)
    service = service_factory(config)
    sim.configure(processing_seconds=60)
    created = service.submit().json()
    service.stop(signal.SIGKILL)
    sim.complete(created["upstream_task_id"])  # its callback finds nobody listening
    service.start()
    job = service.wait_job(created["id"], timeout=30)
    assert job["status"] == "completed"
    assert len(capture.bodies("/slack")) == 1


def test_callback_acknowledged_before_a_crash_is_processed_after_restart(
        sim, capture, tmp_path, service_factory):
    config = rules_config(sim, capture, tmp_path)
    config["upstream"]["reconcile_after"] = "1h"
    service = service_factory(config)
    sim.configure(processing_seconds=60)
    created = service.submit().json()
    sim.configure(api_key="temporarily-refusing-reads")  # verification cannot happen yet
    sim.complete(created["upstream_task_id"])
    wait_until(lambda: service.job(created["id"])["events"])
    service.stop(signal.SIGKILL)
    sim.configure(api_key="sim-test-key")
    service.start()
    job = service.wait_job(created["id"], timeout=30)
    assert job["status"] == "completed"
    assert [e["verified"] for e in job["events"]] == [True]
    assert len(capture.bodies("/slack")) == 1
