"""Chaos: 200 jobs through a faulty upstream while the service is killed twice.

The simulator drops 30% of callbacks, delivers 50% twice, delays 20% past the reconcile
window and answers 500 to 10% of creates. Every completed job is mirrored to S3 (moto's
server) and announced in chat (a capture endpoint standing in for Slack); a quarter of the
jobs, tagged ``chain``, start a follow-up to another image model whose own result goes through
the same rules but does not chain again. The service is SIGKILLed twice while submissions,
callbacks and steps are in flight, and started again.

Clients behave as real ones: half of them send an ``Idempotency-Key`` and retry a request the
kill cut off with the same key (the contract that prevents a second task); the others send
none, so they are never left with a request in flight when the service is killed (a client
without a key cannot know whether to retry).

Afterwards: every job ended and every step succeeded, one S3 object per output, one chat
message per job (duplicates only from a crash between the chat server's 2xx and the commit),
one child per chained parent, one upstream task per job, and duplicate callbacks added nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from tests.conftest import API_KEY, Capture, Service, base_config

PARENTS = 200
CHAIN_EVERY = 4  # every 4th job is tagged "chain": 50 follow-ups at most
KILL_AT = (PARENTS // 3, 2 * PARENTS // 3)  # SIGKILLs come about here in the submissions
KILL_WINDOW = 30  # the submissions around each kill: only keyed clients are in flight
CLIENTS = 6
STEP_WORKERS = 4  # the service's step concurrency: a kill interrupts at most this many steps
BUCKET = "chaos-archive"
REGION = "us-east-1"
KEY_ID = "AKIACHAOSTEST0000000"
SECRET_KEY = "chaos-secret-access-key"
PARENT_MODEL = "google/nano-banana"
CHILD_MODEL = "alibaba/z-image-turbo"
DEADLINE_SECONDS = 150.0
CHAOS = {
    "drop_rate": 0.3,
    "duplicate_rate": 0.5,
    "late_rate": 0.2,
    "late_seconds": 4.0,
    "create_500_rate": 0.1,
    "pending_seconds": 0.05,
    "processing_seconds": 0.3,
    "callback_retry_delays": [0.2, 0.5, 1.0],
}
TERMINAL = ("completed", "failed")


# ---- servers -------------------------------------------------------------------------------


@pytest.fixture
def s3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[str, Any]]:
    """moto's S3 server on 127.0.0.1 and a boto3 client of it; no AWS setup leaks in."""
    for logger in ("werkzeug", "httpx"):  # a line per request otherwise
        caplog.set_level(logging.WARNING, logger=logger)
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET_KEY,
    )
    client.create_bucket(Bucket=BUCKET)
    try:
        yield url, client
    finally:
        client.close()
        httpx.post(f"{url}/moto-api/reset")  # moto's state is per process
        server.stop()


@pytest.fixture
def chat() -> Iterator[Capture]:
    handle = Capture()
    with handle.server:
        yield handle


def chaos_config(sim_url: str, tmp_path: Path, moto_url: str, chat_url: str) -> dict[str, Any]:
    handlers = {
        "archive": {
            "type": "s3",
            "bucket": BUCKET,
            "endpoint_url": moto_url,
            "region": REGION,
            "access_key_id": KEY_ID,
            "secret_access_key": SECRET_KEY,
        },
        "team": {"type": "slack", "webhook_url": f"{chat_url}/slack"},
        "refine": {
            "type": "followup",
            "model": CHILD_MODEL,
            "input": {"prompt": "{{ job.input.prompt }}, refined", "aspect_ratio": "1:1"},
            "tags": ["child"],  # not "chain": a child never chains again
        },
    }
    rules = [
        {"name": "mirror", "match": {"status": "completed"}, "handlers": ["archive", "team"]},
        {
            "name": "chain",
            "match": {"status": "completed", "tags": ["chain"]},
            "handlers": ["refine"],
        },
        {"name": "alarm", "match": {"status": "failed"}, "handlers": ["team"]},
    ]
    return base_config(
        sim_url,
        tmp_path,
        handlers=handlers,
        rules=rules,
        upstream={"reconcile_after": "2s", "reconcile_rate": 20},
    )


def expected_steps(job: dict[str, Any]) -> list[tuple[str, int, str]]:
    """The steps the rules plan for a job's end, once: (rule, position, handler)."""
    if job["status"] == "failed":
        return [("alarm", 0, "team")]
    steps = [("mirror", 0, "archive"), ("mirror", 1, "team")]
    if "chain" in job["tags"]:
        steps.append(("chain", 0, "refine"))
    return sorted(steps)


# ---- the clients ---------------------------------------------------------------------------


@dataclass
class Submission:
    index: int
    body: dict[str, Any]
    key: str | None
    job_id: str | None = None
    status_code: int | None = None
    attempts: int = 0
    error: str | None = None


def submissions() -> list[Submission]:
    subs = []
    for i in range(PARENTS):
        tags = ["chaos"] + (["chain"] if i % CHAIN_EVERY == 0 else [])
        body = {
            "model": PARENT_MODEL,
            "input": {"prompt": f"chaos fox {i}", "aspect_ratio": "1:1"},
            "tags": tags,
            "metadata": {"n": i},
        }
        subs.append(Submission(i, body, f"chaos-{i}" if i % 2 else None))
    return subs


def post_job(service: Service, sub: Submission, deadline: float) -> None:
    """One client: posts once; with a key, retries what a kill cut off with the same key."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    if sub.key:
        headers["Idempotency-Key"] = sub.key
    with httpx.Client(base_url=service.url, timeout=15, headers=headers) as client:
        while True:
            sub.attempts += 1
            try:
                response = client.post("/v1/jobs", json=sub.body)
            except httpx.TransportError as exc:
                if sub.key is None or time.monotonic() > deadline:
                    sub.error = repr(exc)
                    return
                time.sleep(0.1)  # the service is down: try again, same key
                continue
            sub.status_code = response.status_code
            if response.status_code in (200, 201, 202):
                sub.job_id = response.json()["id"]
            else:
                sub.error = response.text
            return


class Killer:
    """SIGKILLs the service once ``after`` answers have come back, then starts it again."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.answered = 0
        self.kills: list[float] = []
        self.downtime: list[float] = []
        self.lock = threading.Lock()
        self.trigger = threading.Event()
        self.after: int | None = None

    def answered_one(self) -> None:
        with self.lock:
            self.answered += 1
            if self.after is not None and self.answered >= self.after:
                self.trigger.set()

    def kill_and_restart(self) -> None:
        self.trigger.wait(timeout=60)
        started = time.monotonic()
        self.service.stop(signal.SIGKILL)
        self.kills.append(started)
        self.service.start()
        self.downtime.append(time.monotonic() - started)


def run_batch(
    service: Service, batch: list[Submission], killer: Killer | None, deadline: float
) -> None:
    """Posts a batch from ``CLIENTS`` concurrent clients; with a ``killer``, the service is
    killed once a third of the batch has been answered, the rest still in flight."""

    def one(sub: Submission) -> None:
        post_job(service, sub, deadline)
        if killer is not None:
            killer.answered_one()
        time.sleep(0.05)  # a steady trickle rather than a burst

    with ThreadPoolExecutor(CLIENTS + 1) as pool:
        killing = None
        if killer is not None:
            killer.trigger.clear()
            killer.after = killer.answered + max(1, len(batch) // 3)
            killing = pool.submit(killer.kill_and_restart)
        list(pool.map(one, batch))
        if killing is not None:
            killing.result()


def submit_everything(service: Service, subs: list[Submission], deadline: float) -> Killer:
    """Submits every job in order, killing the service inside each window of ``KILL_AT``.

    Inside a window only clients with an Idempotency-Key are in flight when the kill comes
    (they retry with the same key); the window's keyless clients go with the next batch."""
    killer = Killer(service)
    start, held = 0, []
    for at in KILL_AT:
        window = subs[at : at + KILL_WINDOW]
        run_batch(service, held + subs[start:at], None, deadline)
        run_batch(service, [s for s in window if s.key], killer, deadline)
        held = [s for s in window if s.key is None]
        start = at + KILL_WINDOW
    run_batch(service, held + subs[start:], None, deadline)
    return killer


# ---- reading the outcome -------------------------------------------------------------------


def get(service: Service, path: str, **params: Any) -> Any:
    """A read (safe to repeat): retried over a connection the kill left stale."""
    for attempt in range(5):
        try:
            response = service.http.get(path, params=params or None)
            response.raise_for_status()
            return response.json()
        except httpx.TransportError:
            if attempt == 4:
                raise
            time.sleep(0.1)
    raise AssertionError("unreachable")


def all_jobs(service: Service) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = get(service, "/v1/jobs", limit=200, **({"cursor": cursor} if cursor else {}))
        jobs += page["data"]
        cursor = page["next_cursor"]
        if not cursor:
            return jobs


def job_state(job: dict[str, Any]) -> str:
    if job["status"] == "accepted" and job.get("submission") == "ambiguous":
        return "ambiguous"
    return "ended" if job["status"] in TERMINAL else "open"


def progress(service: Service, sim: Any) -> tuple[Counter, list[dict[str, Any]], str]:
    """What is still in motion: jobs not ended (``open``), jobs nobody will move
    (``ambiguous``), steps not settled, chained parents without their child, and the
    simulator's own timers and deliveries (late and duplicate callbacks)."""
    jobs = all_jobs(service)
    states = Counter(job_state(j) for j in jobs)
    if states["open"]:
        return states, jobs, f"{states['open']} job(s) not ended"
    details = [get(service, f"/v1/jobs/{j['id']}") for j in jobs]
    for job in details:
        if job_state(job) != "ended":
            continue
        if len(job["runs"]) < len(expected_steps(job)):
            states["open"] += 1
            return states, details, f"job {job['id']} has not planned its steps"
        if any(r["status"] not in ("succeeded", "dead") for r in job["runs"]):
            states["open"] += 1
            return states, details, f"job {job['id']} has steps still to run"
        if job["status"] == "completed" and "chain" in job["tags"] and not job["children"]:
            states["open"] += 1
            return states, details, f"job {job['id']} has no child yet"
    if sim.simulator._background:  # the in-process simulator's pending timers and deliveries
        states["open"] += 1
        return states, details, "the simulator still has callbacks to deliver"
    return states, details, "quiet"


def wait_quiet(
    service: Service, sim: Any, deadline: float, ambiguous_ok: bool
) -> list[dict[str, Any]]:
    """Polls (bounded) until nothing is in motion, and (unless ``ambiguous_ok``) no job is
    left ambiguous; returns every job in detail."""
    while True:
        states, details, why = progress(service, sim)
        if not states["open"] and (ambiguous_ok or not states["ambiguous"]):
            return details
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the run did not settle in time: {why}; {dict(states)}; "
                f"not ended: {describe_open(details)}"
            )
        time.sleep(0.5)


def resolve_ambiguous(service: Service, sim: Any, details: list[dict[str, Any]]) -> Counter:
    """What an operator does, per the README, with a job whose submission a kill left
    ambiguous and that nothing moved since: ask the provider whether the task exists. If it
    does not, ``replay --force`` submits it (nothing is paid twice); if it does, its callback
    was dropped, so the provider's callback is delivered again (the service verifies it with
    ``GET /v1/tasks/{id}`` as always)."""
    outcome: Counter = Counter()
    tasks = {
        t["callback_url"].split("/hooks/")[1].split("/")[0]: t
        for t in sim.tasks()
        if t["callback_url"]
    }
    for job in details:
        if job_state(job) != "ambiguous":
            continue
        assert job["error"].startswith("taskhook stopped while submitting"), job
        task = tasks.get(job["id"])
        if task is None:
            forced = service.http.post(f"/v1/jobs/{job['id']}/replay", json={"force": True})
            assert forced.status_code == 202 and forced.json()["resubmitted"], forced.text
            outcome["resubmitted: no upstream task"] += 1
        else:
            body = {"task_id": task["id"], "status": task["status"]}
            answer = httpx.post(task["callback_url"], json=body, timeout=10)
            assert answer.status_code == 200, answer.text
            outcome["callback redelivered: task existed"] += 1
    return outcome


def s3_objects(client: Any) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        objects += page.get("Contents", [])
    return objects


def post_job_id(post: dict[str, Any]) -> str | None:
    """The job a chat message names (Slack's default text ends with it); None for a post the
    kill cut off mid-body."""
    try:
        return json.loads(post["body"])["text"].rsplit(": ", 1)[1]
    except (ValueError, KeyError, IndexError):
        return None


def describe_open(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: j.get(k) for k in ("id", "status", "submission", "error", "upstream_task_id")}
        for j in details
        if j["status"] not in TERMINAL
    ]


# ---- the test ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_chaos(sim, s3, chat, tmp_path, service_factory):
    began = time.monotonic()
    deadline = began + DEADLINE_SECONDS
    moto_url, client = s3
    sim.configure(fail_rate=0.05, **CHAOS)
    service = service_factory(chaos_config(sim.url, tmp_path, moto_url, chat.url))

    subs = submissions()
    killer = submit_everything(service, subs, deadline)
    submitted_in = time.monotonic() - began

    # Every client got an answer: a retried key came back as the same job, never a second one.
    assert [(s.index, s.error) for s in subs if s.error] == []
    parent_ids = [s.job_id for s in subs]
    assert len(set(parent_ids)) == PARENTS
    assert len(killer.kills) == 2

    # Wait until nothing moves (late and duplicate callbacks delivered too); a job a kill
    # left ambiguous with nothing to adopt it is then resolved as the README tells operators.
    details = wait_quiet(service, sim, deadline, ambiguous_ok=True)
    ambiguous = resolve_ambiguous(service, sim, details)
    details = wait_quiet(service, sim, deadline, ambiguous_ok=False)
    elapsed = time.monotonic() - began

    by_id = {j["id"]: j for j in details}
    parents = [by_id[i] for i in parent_ids]
    children = [j for j in details if j["parent_id"] is not None]
    assert len(details) == len(parents) + len(children)  # no job the clients did not cause
    statuses = Counter(j["status"] for j in details)
    runs = [r for j in details for r in j["runs"]]
    events = [e for j in details for e in j["events"]]
    stats = sim.stats()
    cut_off = [s.status_code for s in subs if s.attempts > 1]
    posts = [r for r in chat.received if r["path"] == "/slack"]
    delivered = [r for r in posts if post_job_id(r)]
    truncated = [r for r in posts if not post_job_id(r)]
    keys = Counter(r["headers"].get("idempotency-key") for r in delivered)
    repeated = {k: n for k, n in keys.items() if n > 1}
    objects = s3_objects(client)
    # How many submissions each restart found in flight (informational: from the log).
    found = re.findall(r"(\d+) job\(s\) were being submitted when taskhook stopped", service.logs())

    print(
        f"\nchaos: {len(parents)} parents + {len(children)} children in {elapsed:.1f}s "
        f"(submitted in {submitted_in:.1f}s; restarts took "
        f"{', '.join(f'{d:.1f}s' for d in killer.downtime)})\n"
        f"  jobs: {dict(statuses)}; answers to the clients: "
        f"{dict(Counter(s.status_code for s in subs))}; keyed requests a kill cut off: "
        f"{len(cut_off)} (answered after retrying: {dict(Counter(cut_off))})\n"
        f"  submissions in flight at a kill (ambiguous): {sum(map(int, found))}; of them "
        f"nothing adopted: {dict(ambiguous) or 0}\n"
        f"  upstream: {stats}\n"
        f"  events: {len(events)} ({sum(e['duplicate'] for e in events)} duplicate, "
        f"{sum(e['source'] == 'poll' for e in events)} by polling)\n"
        f"  steps: {dict(Counter(r['status'] for r in runs))}; attempts "
        f"{sum(r['attempts'] for r in runs)} for {len(runs)} steps (re-run after a kill)\n"
        f"  s3: {len(objects)} objects; chat: {len(posts)} posts ({len(truncated)} cut off "
        f"mid-request by a kill), {len(keys)} distinct keys, "
        f"{len(delivered) - len(keys)} repeated (kills: {len(killer.kills)})"
    )

    # Every job ended; every step succeeded, planned once (duplicate callbacks added none).
    assert describe_open(details) == []
    assert set(statuses) <= set(TERMINAL)
    for job in details:
        planned = sorted((r["rule"], r["position"], r["handler"]) for r in job["runs"])
        assert planned == expected_steps(job), job
        assert {r["generation"] for r in job["runs"]} <= {0}
    dead = [(r["handler"], r["last_error"]) for r in runs if r["status"] != "succeeded"]
    assert dead == []

    # Children: exactly one per completed parent tagged "chain", and none chain again.
    chained = [p for p in parents if p["status"] == "completed" and "chain" in p["tags"]]
    for parent in parents:
        expected = 1 if parent in chained else 0
        assert len(parent["children"]) == expected, parent
        if expected:
            (child_id,) = parent["children"]
            refine = next(r for r in parent["runs"] if r["handler"] == "refine")
            assert refine["result"]["job_id"] == child_id
            child = by_id[child_id]
            assert (child["parent_id"], child["depth"], child["model"]) == (
                parent["id"],
                1,
                CHILD_MODEL,
            )
            assert child["tags"] == ["child"] and child["children"] == []
    assert len(children) == len(chained)

    # One upstream task per job: nothing was submitted twice.
    assert stats["tasks_created"] == len(details)
    task_ids = [j["upstream_task_id"] for j in details]
    assert None not in task_ids and len(set(task_ids)) == len(details)

    # S3: one object per output of every completed job, under its deterministic key.
    completed = [j for j in details if j["status"] == "completed"]
    expected_keys = {
        f"{j['model']}/{j['id']}/{o['filename']}" for j in completed for o in j["outputs"]
    }
    assert len(expected_keys) == sum(len(j["outputs"]) for j in completed)
    listed = [o["Key"] for o in objects]
    assert len(listed) == len(set(listed)) == len(expected_keys)
    assert set(listed) == expected_keys
    assert all(o["Size"] > 0 for o in objects)
    for job in completed:
        archive = next(r for r in job["runs"] if r["handler"] == "archive")
        assert set(archive["result"]["keys"]) <= expected_keys

    # Chat: one message per ended job, each post carrying its step's idempotency key (the
    # same on every attempt). A kill can cut a post off mid-body (the receiver sees a broken
    # request: not a message) or fall between the chat server's 2xx and taskhook's commit of
    # the step (the step runs again after the restart: the same key posted twice, which the
    # key lets a receiver drop). Either can only hit a step that was running at a kill.
    assert all(r["status"] == 200 for r in posts)
    assert None not in keys
    assert len(keys) == len(details)
    assert len(truncated) <= len(killer.kills) * STEP_WORKERS
    job_of_key: dict[str, set[str]] = {}
    for post in delivered:
        job_of_key.setdefault(post["headers"]["idempotency-key"], set()).add(post_job_id(post))
    assert all(len(ids) == 1 for ids in job_of_key.values())
    assert {next(iter(ids)) for ids in job_of_key.values()} == set(by_id)
    for key, count in repeated.items():
        (job_id,) = job_of_key[key]
        team = next(r for r in by_id[job_id]["runs"] if r["handler"] == "team")
        assert 2 <= count <= team["attempts"], (key, team)  # re-run; one post per attempt
    assert sum(n - 1 for n in repeated.values()) <= len(killer.kills) * STEP_WORKERS, repeated
