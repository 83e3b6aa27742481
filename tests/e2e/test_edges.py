"""Edge cases found in review, each pinned by a test over real HTTP."""

from __future__ import annotations

import httpx

from service.security import callback_token
from tests.conftest import SECRET, base_config


def test_failed_job_keeps_its_reason_when_the_create_answer_comes_late(sim, tmp_path,
                                                                       service_factory):
    sim.configure(create_slow_rate=1.0, create_slow_seconds=1.5, fail_rate=1.0)
    service = service_factory(base_config(sim.url, tmp_path))
    response = service.submit()
    assert response.status_code == 201
    job = service.wait_job(response.json()["id"])
    assert job["status"] == "failed" and job["error"]


def test_unusable_output_url_does_not_block_processing(sim, tmp_path, service_factory):
    sim.configure(processing_seconds=60)
    service = service_factory(base_config(sim.url, tmp_path, upstream={"verify": "trust"}))
    job_id = service.submit().json()["id"]
    hook = service.url + f"/hooks/{job_id}/{callback_token(SECRET, job_id)}"
    body = {"status": "completed", "data": {"image_url": "http://["}}
    assert httpx.post(hook, json=body).status_code == 200
    job = service.wait_job(job_id)
    assert job["status"] == "completed"
    assert job["outputs"][0]["filename"] == "output"


def test_nested_json_and_reordered_idempotent_bodies(sim, tmp_path, service_factory):
    service = service_factory(base_config(sim.url, tmp_path))
    deep = b'{"model": "google/nano-banana", "metadata": {"x": ' + b"[" * 2000 + b"]" * 2000
    response = service.http.post("/v1/jobs", content=deep + b"}",
                                 headers={"content-type": "application/json"})
    assert response.status_code == 400 and "nested" in response.json()["detail"]
    first = service.http.post("/v1/jobs", headers={"Idempotency-Key": "k1"}, json={
        "model": "google/nano-banana", "input": {"prompt": "fox", "aspect_ratio": "1:1"}})
    second = service.http.post("/v1/jobs", headers={"Idempotency-Key": "k1"}, json={
        "input": {"aspect_ratio": "1:1", "prompt": "fox"}, "model": "google/nano-banana"})
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    empty = service.http.post("/v1/jobs", content=b"",
                              headers={"content-type": "application/json"})
    assert empty.status_code == 400 and "body" in empty.json()["detail"]
    typed = service.http.post("/v1/jobs", json={"model": 5})
    assert typed.status_code == 400 and typed.json()["detail"].startswith("invalid request: model")
    everything = service.http.post("/v1/replay", json={"force": True})
    assert everything.status_code == 400 and "status" in everything.json()["detail"]
    assert sim.stats()["tasks_created"] == 1


def test_run_time_template_error_and_templated_private_destination(sim, capture, tmp_path,
                                                                   service_factory):
    config = base_config(sim.url, tmp_path, handlers={
        "styled": {"type": "webhook", "url": f"{capture.url}/in",
                   "body": {"style": "{{ job.input.style }}"}},
        "routed": {"type": "webhook", "url": "{{ job.metadata.callback }}"},
    }, rules=[{"name": "a", "handlers": ["styled"]}, {"name": "b", "handlers": ["routed"]}])
    config["security"]["allow_private_networks"] = False
    service = service_factory(config)
    sim.configure(processing_seconds=60)
    created = service.submit(metadata={"callback": f"{capture.url}/steal"}).json()
    sim.complete(created["upstream_task_id"])
    job = service.wait_job(created["id"])
    runs = {r["rule"]: r for r in job["runs"]}
    assert runs["a"]["status"] == "dead" and runs["a"]["attempts"] == 1
    assert "style" in runs["a"]["last_error"]
    assert runs["b"]["status"] == "dead" and "private" in runs["b"]["last_error"]
    assert capture.received == []
