"""The Unified Tasks API simulator, over real HTTP: lifecycle, callbacks, faults, files, admin."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from litestar import Litestar

from service.simulator import Simulator, SimulatorSettings
from tests.support import ServerThread, capture_app, wait_until

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
VIDEO = {"model": "google/veo-3.1-fast", "input": {"prompt": "a cat on the beach"}}
IMAGE = {"model": "google/nano-banana", "input": {"prompt": "a cat", "aspect_ratio": "1:1"}}
SUNO = {"model": "suno-ai/music", "input": {"mv": "chirp-v4", "custom": False}}
TTS = {"model": "elevenlabs/text-to-speech", "input": {"text": "hello"}}
LYRICS = {"model": "suno-ai/lyrics", "input": {"prompt": "sea", "mv": "default"}}


def fast(**overrides: Any) -> SimulatorSettings:
    values: dict[str, Any] = {
        "api_key": KEY,
        "pending_seconds": 0.05,
        "processing_seconds": 0.1,
        "callback_retry_delays": (0.05, 0.1),
        "callback_timeout": 2.0,
        "seed": 7,
    }
    return SimulatorSettings(**(values | overrides))


@contextmanager
def running(settings: SimulatorSettings) -> Iterator[tuple[Simulator, httpx.Client]]:
    sim = Simulator(settings)
    with ServerThread(sim.create_app()) as server, httpx.Client(base_url=server.url) as client:
        yield sim, client


@contextmanager
def receiver(
    status: Callable[[int], int] | None = None,
) -> Iterator[tuple[str, list[dict]]]:
    app, received = capture_app(status)
    with ServerThread(app) as server:
        yield f"{server.url}/hook", received


def create(client: httpx.Client, body: dict, **extra: Any) -> httpx.Response:
    return client.post("/v1/tasks", json=body | extra, headers=AUTH)


def create_id(client: httpx.Client, body: dict, **extra: Any) -> str:
    response = create(client, body, **extra)
    assert response.status_code == 200, response.text
    return response.json()["data"]["task_id"]


def status_of(client: httpx.Client, task_id: str) -> str:
    return client.get(f"/v1/tasks/{task_id}", headers=AUTH).json()["data"]["status"]


def finished(client: httpx.Client, task_id: str) -> dict:
    def done() -> dict | None:
        data = client.get(f"/v1/tasks/{task_id}", headers=AUTH).json()["data"]
        return data if data["status"] in ("completed", "failed") else None

    return wait_until(done, timeout=5)


def stats(client: httpx.Client) -> dict:
    return client.get("/_sim/stats").json()


def bodies(received: list[dict]) -> list[dict]:
    return [json.loads(item["body"]) for item in received]


# --- auth and create ----------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
def test_create_and_status_need_the_bearer_key(headers: dict) -> None:
    with running(fast()) as (sim, client):
        response = client.post("/v1/tasks", json=VIDEO, headers=headers)
        status = client.get("/v1/tasks/abc", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"code": 401, "success": False, "message": response.json()["message"]}
    assert "key" in response.json()["message"]
    assert status.status_code == 401
    assert sim.tasks_created == 0


def test_task_goes_pending_processing_completed_with_output() -> None:
    with running(fast(pending_seconds=0.3, processing_seconds=0.3)) as (sim, client):
        created = create(client, VIDEO)
        body = created.json()
        task_id = body["data"]["task_id"]
        seen = {status_of(client, task_id)}
        wait_until(lambda: status_of(client, task_id) == "processing")
        seen.add("processing")
        data = finished(client, task_id)
        assert stats(client)["tasks_created"] == 1
    assert created.status_code == 200
    assert body == {"code": 200, "success": True, "data": {"task_id": task_id, "status": "pending"}}
    assert len(task_id) >= 12 and task_id.isalnum()
    assert seen == {"pending", "processing"}
    assert data["status"] == "completed"
    assert data["output"]["video_url"].endswith(f"/files/{task_id}/output.mp4")
    assert sim.tasks_created == 1


def test_unknown_task_is_404_envelope() -> None:
    with running(fast()) as (_, client):
        response = client.get("/v1/tasks/doesnotexist1", headers=AUTH)
    assert response.status_code == 404
    assert response.json()["success"] is False
    assert response.json()["code"] == 404


def test_unknown_model_is_404_and_creates_nothing() -> None:
    with running(fast()) as (sim, client):
        response = create(client, {"model": "google/veo-9", "input": {"prompt": "x"}})
    assert response.status_code == 404
    assert response.json()["code"] == 404
    assert "model not found" in response.json()["message"]
    assert sim.tasks_created == 0


def test_invalid_input_is_400_naming_the_field() -> None:
    with running(fast()) as (sim, client):
        response = create(client, {"model": VIDEO["model"], "input": {"seed": 1}})
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert "input.prompt" in response.json()["message"]
    assert sim.tasks_created == 0


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"model": 5, "input": {}}', b'{"input": {}}', b"[1, 2]"],
)
def test_malformed_body_is_400_with_a_message(content: bytes) -> None:
    with running(fast()) as (sim, client):
        response = client.post("/v1/tasks", content=content, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["code"] == 400
    assert response.json()["message"].startswith("invalid request body")
    assert sim.tasks_created == 0


def test_dry_run_prices_and_creates_nothing() -> None:
    with running(fast()) as (sim, client):
        response = create(client, VIDEO, dry_run=True)
        listed = client.get("/_sim/tasks").json()
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["dry_run"] is True
    assert data["model"] == VIDEO["model"]
    assert isinstance(data["cost"], float) and data["cost"] > 0
    assert listed == []
    assert sim.tasks_created == 0


@pytest.mark.parametrize(("knob", "status"), [("create_429_rate", 429), ("create_500_rate", 500)])
def test_create_faults_create_nothing(knob: str, status: int) -> None:
    with running(fast(**{knob: 1.0})) as (_, client):
        response = create(client, VIDEO)
        counts = stats(client)
    assert response.status_code == status
    assert response.json() == {
        "code": status,
        "success": False,
        "message": response.json()["message"],
    }
    if status == 429:
        assert response.headers["retry-after"] == "1"
    assert counts["tasks_created"] == 0
    assert counts["creates_refused"] == 1


# --- callbacks ----------------------------------------------------------------------------


def test_success_callback_carries_outputs_under_data() -> None:
    with receiver() as (hook, received), running(fast()) as (_, client):
        task_id = create_id(client, VIDEO, callback_url=hook)
        status = finished(client, task_id)
        wait_until(lambda: received)
    [callback] = received
    assert callback["method"] == "POST"
    assert callback["headers"]["content-type"] == "application/json"
    assert json.loads(callback["body"]) == {
        "task_id": task_id,
        "status": "completed",
        "data": status["output"],
    }


def test_failure_callback_and_status_carry_error_message() -> None:
    with receiver() as (hook, received), running(fast(fail_rate=1.0)) as (_, client):
        task_id = create_id(client, VIDEO, callback_url=hook)
        status = finished(client, task_id)
        wait_until(lambda: received)
    assert status["status"] == "failed"
    assert status["error_message"].startswith("Generation failed")
    assert "output" not in status
    assert bodies(received) == [
        {"task_id": task_id, "status": "failed", "error_message": status["error_message"]}
    ]


def test_duplicate_rate_delivers_two_identical_callbacks() -> None:
    with receiver() as (hook, received), running(fast(duplicate_rate=1.0)) as (_, client):
        create_id(client, VIDEO, callback_url=hook)
        wait_until(lambda: len(received) == 2)
        counts = stats(client)
    assert received[0]["body"] == received[1]["body"]
    assert counts["callbacks_sent"] == 2


def test_drop_rate_delivers_nothing_but_the_task_completes() -> None:
    with receiver() as (hook, received), running(fast(drop_rate=1.0)) as (_, client):
        task_id = create_id(client, VIDEO, callback_url=hook)
        assert finished(client, task_id)["status"] == "completed"
        wait_until(lambda: stats(client)["callbacks_dropped"] == 1)
        counts = stats(client)
    assert received == []
    assert counts["callbacks_sent"] == 0


def test_callback_is_retried_after_a_500() -> None:
    def status(n: int) -> int:
        return 500 if n == 0 else 200

    with receiver(status) as (hook, received), running(fast()) as (_, client):
        task_id = create_id(client, VIDEO, callback_url=hook)
        wait_until(lambda: len(received) == 2)
        counts = stats(client)
    assert [item["status"] for item in received] == [500, 200]
    assert received[0]["body"] == received[1]["body"]
    assert json.loads(received[1]["body"])["task_id"] == task_id
    assert counts["callbacks_sent"] == 1
    assert counts["callbacks_failed"] == 0


def test_callback_gives_up_after_the_retry_delays() -> None:
    with receiver(lambda n: 503) as (hook, received), running(fast()) as (_, client):
        create_id(client, VIDEO, callback_url=hook)
        wait_until(lambda: stats(client)["callbacks_failed"] == 1)
    assert len(received) == 3  # the first attempt, then one per retry delay


def test_late_callback_waits_and_admin_complete_delivers_now() -> None:
    settings = fast(late_rate=1.0, late_seconds=60, pending_seconds=60)
    with receiver() as (hook, received), running(settings) as (_, client):
        task_id = create_id(client, VIDEO, callback_url=hook)
        done = client.post(
            f"/_sim/tasks/{task_id}/complete",
            json={"status": "failed", "error_message": "Generation failed: test"},
        )
        wait_until(lambda: received)
        again = client.post(f"/_sim/tasks/{task_id}/complete")
    assert done.status_code == 200
    assert done.json()["data"]["status"] == "failed"
    assert bodies(received) == [
        {"task_id": task_id, "status": "failed", "error_message": "Generation failed: test"}
    ]
    assert again.status_code == 409


# --- outputs and files --------------------------------------------------------------------


def output_of(client: httpx.Client, body: dict) -> dict:
    return finished(client, create_id(client, body))["output"]


def test_outputs_by_kind() -> None:
    with running(fast()) as (_, client):
        image = output_of(client, IMAGE)
        suno = output_of(client, SUNO)
        tts = output_of(client, TTS)
        lyrics = output_of(client, LYRICS)
    assert image["image_url"].endswith("/output.png")
    assert [url.rsplit("/", 1)[1] for url in suno["audio_urls"]] == ["clip-1.mp3", "clip-2.mp3"]
    assert tts["audio_url"].endswith("/output.mp3")
    assert set(lyrics) == {"text"} and lyrics["text"]


def test_file_route_serves_a_valid_png_and_media_types() -> None:
    with running(fast()) as (_, client):
        image = httpx.get(output_of(client, IMAGE)["image_url"])
        video = httpx.get(output_of(client, VIDEO)["video_url"])
        audio = httpx.get(output_of(client, TTS)["audio_url"])
        task_id = create_id(client, VIDEO)
        finished(client, task_id)
        missing = client.get(f"/files/{task_id}/other.mp4")
        unknown = client.get("/files/nosuchtask000/output.mp4")
    png = image.content
    assert image.headers["content-type"] == "image/png"
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    length, tag = struct.unpack(">I4s", png[8:16])
    assert (length, tag) == (13, b"IHDR")
    assert struct.unpack(">II", png[16:24]) == (64, 64)
    assert struct.unpack(">I", png[29:33])[0] == zlib.crc32(png[12:29])
    assert png.endswith(b"IEND\xaeB`\x82")
    assert video.headers["content-type"] == "video/mp4"
    assert video.content[4:8] == b"ftyp"
    assert audio.headers["content-type"] == "audio/mpeg"
    assert audio.content[:3] == b"ID3"
    assert missing.status_code == 404
    assert unknown.status_code == 404


def test_output_bytes_streams_the_exact_length() -> None:
    size = 3 * 1024 * 1024 + 17
    with running(fast(output_bytes=size)) as (_, client):
        url = output_of(client, VIDEO)["video_url"]
        total = 0
        with httpx.stream("GET", url) as response:
            for chunk in response.iter_bytes():
                total += len(chunk)
    assert response.headers["content-length"] == str(size)
    assert total == size


# --- mounting and admin -------------------------------------------------------------------


def test_router_mounted_under_a_prefix_puts_it_in_output_urls() -> None:
    sim = Simulator(fast())
    app = Litestar(route_handlers=[sim.router("/simulator")], on_shutdown=[sim.aclose])
    with ServerThread(app) as server, httpx.Client(base_url=f"{server.url}/simulator") as client:
        task_id = create_id(client, IMAGE)
        url = finished(client, task_id)["output"]["image_url"]
        image = httpx.get(url)
    assert url == f"{server.url}/simulator/files/{task_id}/output.png"
    assert image.status_code == 200
    assert image.content.startswith(b"\x89PNG")


def test_public_url_overrides_the_base() -> None:
    with running(fast(public_url="https://cdn.example.com/sim/")) as (_, client):
        task_id = create_id(client, VIDEO)
        url = finished(client, task_id)["output"]["video_url"]
    assert url == f"https://cdn.example.com/sim/files/{task_id}/output.mp4"


def test_admin_settings_change_faults_at_runtime() -> None:
    with running(fast()) as (sim, client):
        changed = client.put("/_sim/settings", json={"fail_rate": 1, "processing_seconds": 0.05})
        task_id = create_id(client, VIDEO)
        status = finished(client, task_id)
        unknown = client.put("/_sim/settings", json={"nonsense": 1})
        out_of_range = client.put("/_sim/settings", json={"drop_rate": 2})
        listed = client.get("/_sim/tasks").json()
    assert changed.status_code == 200
    assert changed.json()["fail_rate"] == 1.0
    assert sim.settings.fail_rate == 1.0
    assert status["status"] == "failed"
    assert unknown.status_code == 400
    assert "nonsense" in unknown.json()["message"]
    assert out_of_range.status_code == 400
    assert sim.settings.drop_rate == 0.0
    assert [(t["id"], t["model"], t["status"]) for t in listed] == [
        (task_id, VIDEO["model"], "failed")
    ]
    assert listed[0]["input"] == VIDEO["input"]


def test_seed_makes_fault_decisions_reproducible() -> None:
    def outcomes() -> list[str]:
        with running(fast(fail_rate=0.5, pending_seconds=0, processing_seconds=0)) as (_, client):
            ids = [create_id(client, VIDEO) for _ in range(12)]
            return [finished(client, task_id)["status"] for task_id in ids]

    first = outcomes()
    assert first == outcomes()
    assert set(first) == {"completed", "failed"}
