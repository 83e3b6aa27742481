"""Standard Webhooks both ways: signed forwards, and signed callbacks required on receipt."""

from __future__ import annotations

import time

import httpx
import pytest
from standardwebhooks import Webhook

from service.security import callback_token, sign
from tests.conftest import SECRET, Capture, base_config
from tests.support import wait_until

FORWARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
INBOUND_SECRET = "whsec_aW5ib3VuZC1zaWduaW5nLXNlY3JldC0xMjM0NTY="


def test_signed_forward_verifies_with_the_reference_library(sim, tmp_path, service_factory):
    receiver = Capture(statuses=[503])
    with receiver.server:
        service = service_factory(base_config(sim.url, tmp_path, handlers={
            "forward": {"type": "webhook", "url": f"{receiver.url}/in", "secret": FORWARD_SECRET,
                        "headers": {"x-job": "{{ job.id }}"}}},
            rules=[{"name": "fwd", "handlers": ["forward"]}]))
        job_id = service.submit().json()["id"]
        job = service.wait_job(job_id, timeout=30)
        assert job["runs"][0]["status"] == "succeeded" and job["runs"][0]["attempts"] == 2
        first, second = receiver.received
        assert [first["status"], second["status"]] == [503, 200]
        assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
        assert second["headers"]["x-job"] == job_id
        payload = Webhook(FORWARD_SECRET).verify(second["body"], second["headers"])
        assert payload["job"]["id"] == job_id and payload["type"] == "job.completed"
        tampered = second["body"].replace(job_id.encode(), b"job_other")
        with pytest.raises(Exception, match=r"[Ss]ignature"):
            Webhook(FORWARD_SECRET).verify(tampered, second["headers"])


@pytest.fixture
def signed_service(sim, tmp_path, service_factory):
    config = base_config(sim.url, tmp_path, upstream={"signing_secret": INBOUND_SECRET})
    sim.configure(signing_secret=INBOUND_SECRET)
    return service_factory(config)


def test_signed_callbacks_are_accepted(signed_service, sim):
    job = signed_service.wait_job(signed_service.submit().json()["id"])
    assert job["status"] == "completed"
    assert [(e["source"], e["verified"]) for e in job["events"]] == [("callback", True)]


def test_unsigned_or_stale_callbacks_are_refused(signed_service, sim):
    sim.configure(processing_seconds=60)
    job = signed_service.submit().json()
    url = signed_service.url + f"/hooks/{job['id']}/{callback_token(SECRET, job['id'])}"
    body = b'{"task_id": "%s", "status": "completed", "data": {}}' % job[
        "upstream_task_id"].encode()
    now = int(time.time())
    cases = {
        "missing": {},
        "stale": {"webhook-id": "msg_1", "webhook-timestamp": str(now - 600),
                  "webhook-signature": sign(INBOUND_SECRET, "msg_1", now - 600, body)},
        "wrong": {"webhook-id": "msg_1", "webhook-timestamp": str(now),
                  "webhook-signature": sign(FORWARD_SECRET, "msg_1", now, body)},
    }
    for name, headers in cases.items():
        response = httpx.post(url, content=body, headers=headers)
        assert response.status_code == 401, name
        assert "signature" in response.json()["detail"] or "webhook-" in response.json()["detail"]
    assert signed_service.job(job["id"])["events"] == []
    good = {"webhook-id": "msg_2", "webhook-timestamp": str(now),
            "webhook-signature": "v1,bogus " + sign(INBOUND_SECRET, "msg_2", now, body)}
    assert httpx.post(url, content=body, headers=good).status_code == 200
    wait_until(lambda: signed_service.job(job["id"])["events"])
