"""Hostile input: the receiver and the REST API never answer 5xx and never change state for
malformed, oversized, wrongly typed or unauthenticated requests; secrets never appear in logs
or API answers.

Everything talks to real servers on 127.0.0.1 (the service as a subprocess, the simulator and
capture endpoints on threads). Generation is bounded and derandomized: the same requests are
sent on every run.
"""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from standardwebhooks import Webhook

from service.security import callback_token, sign
from tests.conftest import (
    API_KEY,
    SECRET,
    Capture,
    Service,
    Simulator,
    SimulatorServer,
    base_config,
    fast_settings,
)
from tests.support import ServerThread, wait_until

LIMIT = 1024 * 1024  # the receiver's documented body limit
SCRUBBED_ENV = ("TASKHOOK_", "UNIFICALLY_", "SLACK_")


def fuzz_settings(max_examples: int) -> settings:
    """Bounded, reproducible runs: a fixed derandomized sequence, no shrinking, no database."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


def has_detail(response: httpx.Response | Any) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return (
        isinstance(body, dict)
        and isinstance(body.get("detail"), str)
        and bool(body["detail"].strip())
    )


# ---- shared strategies ---------------------------------------------------------------------

TRAVERSAL = [
    "..",
    ".",
    "../..",
    "../../etc/passwd",
    "..%2f..",
    "%2e%2e",
    "%2e%2e%2f",
    "..\\..\\win.ini",
    "/etc/passwd",
    "job_x/../job_y",
    "%00",
    "%ff%fe",
    "%",
    "?x=1",
    "#frag",
    ";",
    "job_%0d%0a",
]
EMPTYISH = ["", " ", "  ", "\t", "0", "null", "undefined", "%20", "+", "=", "-"]
CONTENT_TYPES = [
    None,
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=utf-16",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/octet-stream",
    "application/cloudevents+json",
    "*/*",
    "",
    ";;;",
    "application/",
]
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
)
ids_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
any_text = st.text(st.characters(), max_size=40)  # lone surrogates included (escaped in JSON)

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(2**63, 2**200)
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text
)


def json_of(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaf,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
        max_leaves=20,
    )


json_values = json_of(json_leaf)  # NaN and Infinity too: what a hostile sender writes
finite_json = json_of(json_leaf.filter(lambda v: not isinstance(v, float) or math.isfinite(v)))


# ==== 1. schemathesis over /schema/openapi.json ================================================


@pytest.fixture(scope="module")
def api_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, SimulatorServer]]:
    """One service (with a rule, so replays do something) and its simulator for the module."""
    simulator = Simulator(fast_settings())
    with ServerThread(simulator.create_app()) as server:
        sim = SimulatorServer(simulator, server)
        workdir = tmp_path_factory.mktemp("api")
        config = base_config(
            sim.url,
            workdir,
            handlers={"files": {"type": "local", "directory": str(workdir / "files")}},
            rules=[{"name": "keep", "match": {"status": "completed"}, "handlers": ["files"]}],
        )
        service = Service(workdir, config)
        # The module fixture is set up before the autouse clean_environment: scrub it here.
        service.env = {k: v for k, v in service.env.items() if not k.startswith(SCRUBBED_ENV)}
        try:
            service.start()
            yield service, sim
        finally:
            service.stop()
            service.http.close()
            sim.http.close()


def api_state(service: Service, sim: SimulatorServer) -> dict[str, Any]:
    jobs = service.http.get("/v1/jobs", params={"limit": 200}).json()["data"]
    return {
        "jobs": sorted((j["id"], j["status"], j["updated_at"]) for j in jobs),
        "sim": sim.stats(),
    }


# Negative generation needs something to break: these operations have no query, header or
# body parameter (the receiver's path parameters are plain strings), so hypothesis finds no
# negative case for them. They are still run in positive mode; nothing else is left out.
NO_NEGATIVE_CASES = {"POST /hooks/{job_id}/{token}", "GET /healthz", "GET /readyz", "GET /metrics"}


class SchemaRun:
    """Sends schemathesis cases to the live service and collects distinct failures: a 5xx
    (schemathesis' ``not_a_server_error``) or a 4xx without a ``detail``."""

    def __init__(self, service: Service, headers: dict[str, str]) -> None:
        self.service = service
        self.headers = headers
        self.schema = schemathesis.openapi.from_url(f"{service.url}/schema/openapi.json")
        self.operations = [result.ok() for result in self.schema.get_all_operations()]
        self.sent = 0
        self.failures: dict[tuple[str, int, str], str] = {}
        self.no_negative: set[str] = set()

    def send(self, case: Any) -> Any:
        response = case.call(base_url=self.service.url, headers=self.headers, timeout=30)
        self.sent += 1
        problem = None
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except FailureGroup:
            problem = "server error"
        if 400 <= response.status_code < 500 and not has_detail(response):
            problem = f"4xx without a detail: {response.text[:200]!r}"
        if problem:
            key = (case.operation.label, response.status_code, problem)
            self.failures.setdefault(key, case.as_curl_command(headers=self.headers))
        return response

    def run(
        self,
        examples: int,
        only: Callable[[Any], bool] = lambda _: True,
        path_parameters: dict[str, Any] | None = None,
    ) -> None:
        for operation in filter(only, self.operations):
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = operation.as_strategy(
                    generation_mode=mode, path_parameters=path_parameters
                )

                @fuzz_settings(examples)
                @given(case=strategy)
                def run(case: Any) -> None:
                    self.send(case)

                try:
                    run()
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE, operation.label
                    self.no_negative.add(operation.label)

    def report(self) -> str:
        return "\n".join(
            f"{label} -> {code}: {why}\n    {curl}"
            for (label, code, why), curl in self.failures.items()
        )


@st.composite
def catalog_submissions(draw: st.DrawFn, models: list[dict[str, Any]]) -> dict[str, Any]:
    """``POST /v1/jobs`` bodies for real catalog models, with inputs that are partly valid and
    partly hostile (wrong types, out-of-range numbers, unknown keys): plain schema generation
    only produces unknown model names, which never reach the catalog's validation."""
    model = draw(st.sampled_from(models))
    plausible = {
        "string": st.just("a red fox"),
        "integer": st.integers(-5, 200),
        "number": st.floats(-5, 200),
        "boolean": st.booleans(),
        "string[]": st.just(["http://127.0.0.1:1/in.png"]),
    }
    values: dict[str, Any] = {}
    for param in model["parameters"]:
        if not (param["required"] or draw(st.booleans())):
            continue
        if param["allowed"] and draw(st.booleans()):
            values[param["name"]] = draw(st.sampled_from(param["allowed"]))
        elif param["type"] in plausible and draw(st.integers(0, 3)):
            values[param["name"]] = draw(plausible[param["type"]])
        else:
            values[param["name"]] = draw(finite_json)
    if draw(st.integers(0, 4)) == 0:
        values[draw(any_text)] = draw(finite_json)
    body: dict[str, Any] = {"model": model["name"], "input": values}
    if draw(st.integers(0, 3)) == 0:
        body["dry_run"] = True
    if draw(st.integers(0, 3)) == 0:
        body["metadata"] = draw(st.dictionaries(any_text, finite_json, max_size=3))
    if draw(st.integers(0, 3)) == 0:
        body["input"] = draw(finite_json)  # not an object at all
    return body


def test_schemathesis_with_the_api_key(api_env):
    """Generated data (valid and invalid per the schema) for every operation, authenticated:
    no 5xx, every 4xx says why. Submissions that pass validation create real tasks on the
    simulator (the upstream); their number is printed."""
    service, sim = api_env
    seed = service.submit()
    assert seed.status_code == 201, seed.text
    job_id = seed.json()["id"]
    service.wait_job(job_id)
    started = time.monotonic()
    schema_run = SchemaRun(service, {"Authorization": f"Bearer {API_KEY}"})
    schema_run.run(examples=25)
    # The job routes again with a real job id, so show and replay reach a completed job.
    schema_run.run(
        examples=15,
        path_parameters={"job_id": job_id},
        only=lambda op: op.path.startswith("/v1/jobs/{job_id}"),
    )
    create = schema_run.schema["/v1/jobs"]["POST"]
    models = service.http.get("/v1/models").json()["data"]

    @fuzz_settings(60)
    @given(body=catalog_submissions(models))
    def submit(body: dict[str, Any]) -> None:
        schema_run.send(create.Case(body=body, media_type="application/json"))

    submit()
    elapsed = time.monotonic() - started
    created = sim.stats()["tasks_created"] - 1
    print(
        f"schemathesis (with key): {schema_run.sent} requests in {elapsed:.1f}s; "
        f"{created} upstream task(s) created by generated submissions"
    )
    assert schema_run.no_negative == NO_NEGATIVE_CASES
    assert not schema_run.failures, schema_run.report()


def test_schemathesis_without_the_api_key(api_env):
    """The same without credentials, and with a wrong key: no 5xx, every 4xx says why, every
    /v1 operation answers 401, and nothing changes: no job, no upstream task."""
    service, sim = api_env
    for job in service.http.get("/v1/jobs", params={"limit": 200}).json()["data"]:
        service.wait_job(job["id"], timeout=30)  # jobs of an earlier test settle first
    before = api_state(service, sim)
    started = time.monotonic()
    runs = [SchemaRun(service, {}), SchemaRun(service, {"Authorization": f"Bearer {API_KEY}x"})]
    statuses: dict[str, set[int]] = {}
    for schema_run in runs:
        send = schema_run.send

        def record(case: Any, send: Callable[[Any], Any] = send) -> Any:
            response = send(case)
            statuses.setdefault(case.operation.label, set()).add(response.status_code)
            return response

        schema_run.send = record  # type: ignore[method-assign]
    runs[0].run(examples=25)
    runs[1].run(examples=10, only=lambda op: op.path.startswith("/v1"))
    elapsed = time.monotonic() - started
    print(
        f"schemathesis (no key / wrong key): {sum(r.sent for r in runs)} requests in {elapsed:.1f}s"
    )
    assert not runs[0].failures and not runs[1].failures, runs[0].report() + runs[1].report()
    assert {
        label: codes for label, codes in statuses.items() if " /v1" in label and codes != {401}
    } == {}
    assert api_state(service, sim) == before


# ==== 2. property-based fuzz of the receiver ==================================================

bad_status = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.just(""),
    st.text(min_size=65, max_size=120),
    st.lists(any_text, max_size=3),
    st.dictionaries(any_text, any_text, max_size=2),
)
bad_task_id = st.one_of(
    st.integers(),
    st.booleans(),
    st.just(""),
    st.text(min_size=201, max_size=260),
    st.lists(any_text, max_size=2),
    any_text.filter(bool),
)
some_status = st.one_of(bad_status, st.sampled_from(["completed", "failed", "processing"]))


def dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


@st.composite
def callback_shaped(draw: st.DrawFn) -> bytes:
    """A JSON object that looks like a callback, with wrong types in status and task_id."""
    body: dict[str, Any] = {}
    if draw(st.booleans()):
        body["status"] = draw(some_status)
    if draw(st.booleans()):
        body["task_id"] = draw(st.one_of(st.none(), bad_task_id))
    if draw(st.booleans()):
        body["data"] = draw(json_values)
    return dumps(body)


@st.composite
def deep_nesting(draw: st.DrawFn) -> bytes:
    depth = draw(st.sampled_from([2, 64, 200, 1000, 100_000]))
    kind = draw(st.sampled_from(["list", "object", "status", "data", "unclosed"]))
    if kind == "data":  # a well-formed callback: stay where every decoder accepts it
        depth = min(depth, 200)
    nested = "[" * depth + "]" * depth
    if kind == "object":
        return ('{"a":' * depth + "1" + "}" * depth).encode()
    if kind == "status":
        return ('{"status": ' + nested + "}").encode()
    if kind == "data":
        return ('{"status": "completed", "data": ' + nested + "}").encode()
    if kind == "unclosed":
        return ("[" * depth).encode()
    return nested.encode()


@st.composite
def near_limit(draw: st.DrawFn) -> bytes:
    """Bodies around the 1 MiB limit (and far over it), exactly ``size`` bytes long."""
    size = draw(
        st.one_of(st.integers(LIMIT - 64, LIMIT + 64), st.sampled_from([2 * LIMIT, 4 * LIMIT]))
    )
    kind = draw(st.sampled_from(["bad_status", "valid", "truncated", "raw"]))
    if kind == "raw":
        return b"x" * size
    head = {
        "bad_status": b'{"status": 1, "pad": "',
        "valid": b'{"status": "completed", "pad": "',
        "truncated": b'{"status": "completed", "pad": "',
    }[kind]
    tail = b"" if kind == "truncated" else b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


bodies = st.one_of(
    st.binary(max_size=512),
    json_values.map(dumps),
    callback_shaped(),
    deep_nesting(),
    near_limit(),
    st.sampled_from(
        [
            b"",
            b"null",
            b"{}",
            b"[]",
            b'"completed"',
            b"{",
            b'{"status": "\\ud800"}',
            b'{"status": "completed", "status": 1}',
            b'{"status": "\xff\xfe"}',
            b"\xef\xbb\xbf{}",
            '{"status": "completed"}'.encode("utf-16"),
            b'{"status": NaN}',
            b"1e999999",
            b'{"status": "completed", "task_id": "\\u0000"}',
            b'{"status": "\\u0000"}',
        ]
    ),
)


def callback_verdict(body: bytes, job_task_id: str | None) -> int:
    """What README promises for this body with the right token and a known job."""
    if len(body) > LIMIT:
        return 413
    try:
        payload = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return 400
    if not isinstance(payload, dict):
        return 400
    status, task_id = payload.get("status"), payload.get("task_id")
    if not (isinstance(status, str) and 1 <= len(status) <= 64):
        return 400
    if task_id is not None and not (isinstance(task_id, str) and 1 <= len(task_id) <= 200):
        return 400
    if job_task_id and task_id and task_id != job_task_id:
        return 409
    return 200


def weighted(tenths: int, first: st.SearchStrategy[Any], rest: st.SearchStrategy[Any]) -> Any:
    """``first`` in ``tenths`` of ten draws, else ``rest``."""
    return st.integers(0, 9).flatmap(lambda n: first if n < tenths else rest)


def path_segment(value: str, raw: bool) -> str:
    """Quoted: the server sees exactly ``value`` (dots too, so nothing is normalised away)."""
    return value if raw else quote(value, safe="").replace(".", "%2E")


class StateProbe:
    """What a hostile request must not change: the target jobs in full (status, events, runs),
    the job list and the simulator's counters. The reads run in parallel: a round trip to the
    local servers costs ~45 ms here, and this runs after every example."""

    def __init__(self, service: Service, sim: SimulatorServer, targets: list[str]) -> None:
        self.service, self.sim, self.targets = service, sim, targets
        self.pool = ThreadPoolExecutor(max_workers=len(targets) + 2)

    def read(self) -> dict[str, Any]:
        calls: dict[str, Callable[[], Any]] = {
            job_id: partial(self.service.job, job_id) for job_id in self.targets
        }
        calls["listed"] = lambda: sorted(
            j["id"] for j in self.service.http.get("/v1/jobs", params={"limit": 200}).json()["data"]
        )
        calls["sim"] = self.sim.stats
        futures = {name: self.pool.submit(call) for name, call in calls.items()}
        return {name: future.result() for name, future in futures.items()}

    def close(self) -> None:
        self.pool.shutdown()


@pytest.fixture
def receiver(sim, tmp_path, service_factory):
    """A service with a completed job and a submitted one (its task stays processing), plus
    a sacrificial submitted job that takes the well-formed callbacks the fuzz produces (those
    may legitimately change state, so never on a job whose state is compared)."""
    service = service_factory(base_config(sim.url, tmp_path, upstream={"reconcile_after": "1h"}))
    completed = service.wait_job(service.submit().json()["id"])
    assert completed["status"] == "completed"
    sim.configure(processing_seconds=3600)
    submitted = service.submit().json()
    sacrificial = service.submit().json()
    assert submitted["status"] == sacrificial["status"] == "submitted"
    probe = StateProbe(service, sim, [completed["id"], submitted["id"]])
    yield (
        service,
        {"completed": completed, "submitted": submitted, "sacrificial": sacrificial},
        probe,
    )
    probe.close()


def expected_codes(
    job_id: str, token: str, raw: bool, body: bytes, known: dict[str, dict[str, Any]]
) -> tuple[str, set[int]]:
    """The request's category and the answers README allows for it."""
    if raw:  # a traversal path sent unquoted: it may route anywhere, or nowhere
        return "raw path", {401, 404, 405}
    if not job_id or not token or "/" in job_id + token:  # routing decodes %2F first
        return "no route", {404}
    if token != callback_token(SECRET, job_id):
        return "wrong token", {401}
    if job_id not in known:
        return "right token, unknown job", {413} if len(body) > LIMIT else {400, 404}
    verdict = callback_verdict(body, known[job_id]["upstream_task_id"])
    return ("well-formed" if verdict == 200 else "right token, malformed"), {verdict}


def test_receiver_fuzz(receiver):
    """Random bodies, headers, tokens and job ids at POST /hooks/{job_id}/{token}: never 5xx;
    a wrong token is 401 (404 when the path cannot route: empty segment, %2F) and changes
    nothing; the right token with a malformed body is the documented 4xx (400 malformed,
    409 foreign task_id, 413 over 1 MiB; 400/404 for an unknown job) and changes nothing."""
    service, jobs, probe = receiver
    targets = {name: jobs[name] for name in ("completed", "submitted")}
    known = {j["id"]: j for j in targets.values()}
    sacrificial = jobs["sacrificial"]["id"]
    before = probe.read()
    client = httpx.Client(base_url=service.url, timeout=30)  # no bearer: the token is all
    counts: dict[str, int] = {"unsendable": 0}
    other_token = callback_token(SECRET, jobs["completed"]["id"])

    job_ids = weighted(
        5,
        st.sampled_from(sorted(known)),
        st.one_of(
            st.sampled_from(TRAVERSAL),
            st.sampled_from(EMPTYISH),
            ids_text,
            st.text("0123456789abcdefghjkmnpqrstvwxyz", min_size=26, max_size=26).map(
                lambda s: "job_" + s
            ),
            st.integers(1000, 20_000).map(lambda n: "job_" + "a" * n),
        ),
    )

    def tokens(job_id: str) -> st.SearchStrategy[str]:
        right = callback_token(SECRET, job_id)
        near_misses = [right[:-1], right + "x", right.upper(), right + "=", " " + right]
        near_misses += [right[:-1] + ("A" if right[-1] != "A" else "B"), other_token]
        return weighted(
            6,
            st.just(right),
            st.one_of(
                st.sampled_from(near_misses),
                st.sampled_from(EMPTYISH + TRAVERSAL),
                ids_text,
                st.integers(100, 10_000).map(lambda n: "A" * n),
            ),
        )

    headers_strategy = st.fixed_dictionaries(
        {},
        optional={
            "content-type": st.sampled_from(CONTENT_TYPES) | header_text,
            "content-encoding": st.sampled_from(["gzip", "br", "deflate", "identity", "x"]),
            "webhook-id": header_text,
            "webhook-timestamp": st.one_of(header_text, st.integers(-(2**70), 2**70).map(str)),
            "webhook-signature": st.one_of(header_text, header_text.map(lambda s: "v1," + s)),
            "x-forwarded-for": header_text,
            "transfer-encoding": st.just("chunked"),  # sent as a chunked stream, no length
        },
    )

    @fuzz_settings(250)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        job_id = data.draw(job_ids, label="job_id")
        token = data.draw(tokens(job_id), label="token")
        raw = job_id in TRAVERSAL and data.draw(st.booleans(), label="raw path")
        body = data.draw(bodies, label="body")
        headers = {
            k: v.encode("latin-1") for k, v in data.draw(headers_strategy).items() if v is not None
        }
        chunked = headers.pop("transfer-encoding", None) is not None
        category, allowed = expected_codes(job_id, token, raw, body, known)
        if category == "well-formed":  # may change state: sent to the sacrificial job
            job_id, token = sacrificial, callback_token(SECRET, sacrificial)
            allowed = {200, 409}
        path = f"/hooks/{path_segment(job_id, raw)}/{path_segment(token, raw)}"
        content: Any = body
        if chunked:
            content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)] or [b""])
        try:
            response = client.post(path, content=content, headers=headers)
        except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError):
            counts["unsendable"] += 1  # refused by httpx itself: nothing reached the server
            return
        counts[category] = counts.get(category, 0) + 1
        shown = (
            f"[{category}] POST {path[:200]} body={body[:100]!r} ({len(body)} bytes) "
            f"headers={headers} -> {response.status_code} {response.text[:300]}"
        )
        assert response.status_code < 500, shown
        assert response.status_code in allowed, shown
        assert response.status_code < 400 or has_detail(response), shown
        if category == "well-formed":
            return
        assert probe.read() == before, f"state changed after {shown}"

    started = time.monotonic()
    try:
        run()
    finally:
        client.close()
    elapsed = time.monotonic() - started
    print(f"receiver fuzz: {counts}, in {elapsed:.1f}s")
    assert sum(counts.values()) - counts["unsendable"] >= 200, counts
    assert counts.get("right token, malformed", 0) >= 50, counts
    assert probe.read() == before


def json_routes(service: Service, job_id: str, value: bytes) -> dict[str, tuple[str, bytes, Any]]:
    """Every route that decodes a JSON body, given ``value`` where a JSON value goes."""
    hook = service.url + service.hook_url(job_id)
    return {
        "POST /hooks/{job_id}/{token} (bare)": (hook, value, httpx),
        "POST /hooks/{job_id}/{token} (status)": (hook, b'{"status": ' + value + b"}", httpx),
        "POST /v1/jobs": (
            "/v1/jobs",
            b'{"model": "google/nano-banana", "input": {"prompt": '
            + value
            + b', "aspect_ratio": "1:1"}}',
            service.http,
        ),
        "POST /v1/jobs/{job_id}/replay": (f"/v1/jobs/{job_id}/replay", value, service.http),
        "POST /v1/replay": ("/v1/replay", b'{"since": ' + value + b"}", service.http),
        "POST /v1/jobs (no key)": (f"{service.url}/v1/jobs", value, httpx),
    }


def refuse_everywhere(receiver: Any, values: list[bytes]) -> set[int]:
    """Each value at each JSON route: a 4xx with a detail, and no state change. Returns the
    status codes seen."""
    service, jobs, probe = receiver
    before = probe.read()
    answers = {}
    for value in values:
        for name, (url, body, client) in json_routes(
            service, jobs["submitted"]["id"], value
        ).items():
            response = client.post(url, content=body, headers={"content-type": "application/json"})
            ok = 400 <= response.status_code < 500 and has_detail(response)
            answers[f"{name} with {value[:24]!r}"] = (ok, response.status_code, response.text[:80])
    assert [
        f"{name} -> {code} {text}" for name, (ok, code, text) in answers.items() if not ok
    ] == []
    assert probe.read() == before
    return {code for _, code, _ in answers.values()}


def test_invalid_utf8_in_json_is_a_400(receiver):
    codes = refuse_everywhere(receiver, [b'"\xff"', b'"\xc3"', b'"a\xed\xa0\x80"', b'{"\xfe": 1}'])
    assert codes == {400, 401}  # 401: the request sent without a key


def test_deeply_nested_json_is_a_400(receiver):
    """Nesting deeper than msgspec allows makes it raise RecursionError (from ~500 levels in
    the server, depending on the stack in use): a 400 everywhere, not a 500."""
    codes = refuse_everywhere(receiver, [b"[" * n + b"]" * n for n in (1000, 100_000)])
    assert codes <= {400, 401, 413} and 400 in codes


INBOUND_SECRET = "whsec_" + base64.b64encode(b"inbound-hostile-signing-key-0042").decode()


def test_receiver_signature_headers_fuzz(sim, tmp_path, service_factory):
    """With upstream.signing_secret: the right token and a well-formed body, but bogus, stale,
    partial or mismatched webhook-* headers: always 401 with a detail, never a state change."""
    service = service_factory(
        base_config(
            sim.url, tmp_path, upstream={"reconcile_after": "1h", "signing_secret": INBOUND_SECRET}
        )
    )
    sim.configure(processing_seconds=3600)
    job = service.submit().json()
    assert job["status"] == "submitted"
    url = service.url + service.hook_url(job["id"])
    good_body = dumps({"task_id": job["upstream_task_id"], "status": "completed", "data": {}})
    probe = StateProbe(service, sim, [job["id"]])
    before = probe.read()

    @fuzz_settings(120)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        now = int(time.time())
        msg_id = data.draw(header_text.filter(bool), label="webhook-id")
        sent_ts = data.draw(
            st.one_of(
                st.integers(-3600, 3600).map(lambda d: str(now + d)),
                header_text,
                st.sampled_from(["", "1e9", "0x10", "+1", "1_0", "-1", str(2**80), "NaN"]),
            )
        )
        signed_id = data.draw(st.one_of(st.just(msg_id), header_text.filter(bool)))
        signed_ts = now + data.draw(st.one_of(st.integers(-3600, 3600), st.just(0)))
        signed_body = data.draw(st.one_of(st.just(good_body), st.binary(max_size=64)))
        key = data.draw(
            st.sampled_from(
                [INBOUND_SECRET, "whsec_" + base64.b64encode(b"some-other-key").decode()]
            )
        )
        valid_sig = sign(key, signed_id, signed_ts, signed_body)
        signature = data.draw(
            st.one_of(
                st.just(valid_sig),
                st.just("v1,bogus " + valid_sig),
                st.just(valid_sig[3:]),
                st.just("v2," + valid_sig[3:]),
                header_text,
            )
        )
        try:
            sent_int: int | None = int(sent_ts)  # as the receiver reads it
        except ValueError:
            sent_int = None
        really_valid = (
            key == INBOUND_SECRET
            and signed_id == msg_id
            and signed_body == good_body
            and sent_int == signed_ts
            and abs(now - signed_ts) <= 300
            and valid_sig in signature.split()
        )
        if really_valid:  # a correct signature is not hostile input
            return
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": sent_ts,
            "webhook-signature": signature,
        }
        drop = data.draw(st.sets(st.sampled_from(sorted(headers)), max_size=3))
        sent = {k: v.encode("latin-1") for k, v in headers.items() if k not in drop}
        response = httpx.post(url, content=good_body, headers=sent, timeout=30)
        shown = f"headers={sent}"
        assert response.status_code == 401, f"{response.status_code} {response.text}: {shown}"
        assert has_detail(response), shown
        assert probe.read() == before, shown

    try:
        run()
    finally:
        probe.close()


# ==== 3. secrets never reach logs or API answers ==============================================

UPSTREAM_KEY = "upstream-key-HOSTILE-31415926535"
SLACK_SECRET = "SUPERSECRETPATH"
DEAD_SECRET = "DEADSLACKSECRETPATH"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"forward-signing-key-HOSTILE-0001").decode()


class DebugService(Service):
    """``Service`` started with ``--log-level debug`` (the conftest fixture cannot pass it)."""

    def start(self) -> DebugService:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "service.cli",
                    "serve",
                    "-c",
                    str(self.config_path),
                    "--log-level",
                    "debug",
                ],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
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


@pytest.fixture
def debug_service() -> Iterator[Callable[[Path, dict[str, Any]], DebugService]]:
    started: list[DebugService] = []

    def make(workdir: Path, config: dict[str, Any]) -> DebugService:
        service = DebugService(workdir, config)
        started.append(service)
        return service.start()

    yield make
    for service in started:
        service.stop()
        service.http.close()


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value in text]


def test_secrets_stay_out_of_logs_and_answers(sim, capture, tmp_path, debug_service):
    """A full run with distinctive secrets and failure paths, at debug log level; then no
    secret and no callback token appears in the log or in any API answer."""
    capture.statuses = [500]  # the first Slack post fails (retried), the next succeed
    forward, dead = Capture(), Capture(statuses=[404] * 100)  # 404: the step goes dead
    slack_url = f"{capture.url}/services/T000/B000/{SLACK_SECRET}"
    dead_url = f"{dead.url}/services/T111/B111/{DEAD_SECRET}"
    sim.configure(api_key=UPSTREAM_KEY)
    config = base_config(
        sim.url,
        tmp_path,
        upstream={"api_key": UPSTREAM_KEY},
        handlers={
            "team": {"type": "slack", "webhook_url": slack_url},
            "forward": {"type": "webhook", "url": f"{forward.url}/in", "secret": WEBHOOK_SECRET},
            "alarm": {"type": "slack", "webhook_url": dead_url, "retry": {"max_attempts": 2}},
        },
        rules=[
            {"name": "tell", "match": {"status": "completed"}, "handlers": ["team", "forward"]},
            {"name": "page", "handlers": ["alarm"]},
        ],
    )
    answers: list[str] = []
    with forward.server, dead.server:
        service = debug_service(tmp_path, config)

        def keep(response: httpx.Response) -> httpx.Response:
            answers.append(f"{response.status_code} {response.headers}\n{response.text}")
            return response

        # Wrong credentials at the API.
        for value in (f"Bearer {API_KEY}x", f"Basic {API_KEY}", "Bearer wrong", API_KEY):
            response = keep(httpx.get(f"{service.url}/v1/jobs", headers={"Authorization": value}))
            assert response.status_code == 401
        # A normal job; one whose callback is dropped (finished by polling); a failed one.
        normal = keep(service.submit()).json()
        sim.configure(drop_rate=1.0)
        dropped = keep(service.submit()).json()
        sim.configure(drop_rate=0.0, fail_rate=1.0)
        failed = keep(service.submit()).json()
        sim.configure(fail_rate=0.0)
        # The upstream refuses taskhook's key: 502, the job is kept as rejected.
        sim.configure(api_key="another-key")
        refused = keep(service.submit())
        assert refused.status_code == 502, refused.text
        sim.configure(api_key=UPSTREAM_KEY)
        # Callbacks with a bad token, a malformed body, a foreign task id, and one that
        # makes the service fail (an internal error must not log the path, which holds the
        # token; 500 is the known bug of test_invalid_utf8_in_json_is_a_400).
        token = callback_token(SECRET, normal["id"])
        for path, body, codes in [
            (f"/hooks/{normal['id']}/{token[:-1]}x", b'{"status": "completed"}', {401}),
            (f"/hooks/{normal['id']}/{token}", b'{"status": 42}', {400}),
            (f"/hooks/{normal['id']}/{token}", b'{"status": "ok", "task_id": "t_1"}', {409}),
            (f"/hooks/{normal['id']}/{token}", b'{"status": "\xff"}', {400, 500}),
        ]:
            response = keep(httpx.post(service.url + path, content=body))
            assert response.status_code in codes, response.text

        ended = {}
        for job in (normal, dropped, failed):
            ended[job["id"]] = service.wait_job(job["id"], timeout=60)
        assert ended[normal["id"]]["status"] == "completed"
        assert ended[dropped["id"]]["events"][0]["source"] == "poll"
        assert ended[failed["id"]]["status"] == "failed"
        runs = {(r["handler"], r["status"]) for j in ended.values() for r in j["runs"]}
        assert ("team", "succeeded") in runs and ("alarm", "dead") in runs, runs
        team = [
            r
            for r in ended[normal["id"]]["runs"] + ended[dropped["id"]]["runs"]
            if r["handler"] == "team"
        ]
        assert any(r["attempts"] >= 2 for r in team), team  # the 500 was retried
        wait_until(lambda: len(dead.received) >= 3 and len(forward.received) >= 2)

        listed = keep(service.http.get("/v1/jobs", params={"limit": 200})).json()["data"]
        job_ids = [j["id"] for j in listed]
        assert len(job_ids) == 4, job_ids
        for job_id in job_ids:
            keep(service.http.get(f"/v1/jobs/{job_id}"))
        for path in ("/metrics", "/schema/openapi.json", "/healthz", "/readyz"):
            keep(httpx.get(service.url + path))
        service.stop()  # shutdown logging included

    logs = service.logs()
    # The failure paths were logged (so the grep below has something to look at). Note: with
    # --log-level debug no DEBUG line appears at all: Litestar's logging config sets the root
    # logger back to INFO, so this is the most verbose log the service can be made to write.
    assert "is dead" in logs and "taskhook ready" in logs, logs
    secrets = {
        "api key": API_KEY,
        "server.secret": SECRET,
        "upstream api key": UPSTREAM_KEY,
        "slack url": slack_url,
        "slack secret path": SLACK_SECRET,
        "dead slack secret path": DEAD_SECRET,
        "webhook secret": WEBHOOK_SECRET,
        "webhook secret (base64 part)": WEBHOOK_SECRET.removeprefix("whsec_"),
    }
    secrets.update(
        {f"callback token of {job_id}": callback_token(SECRET, job_id) for job_id in job_ids}
    )
    # The secrets were really in use: the Slack posts went to the secret paths, the forward
    # was signed with the webhook secret, the upstream took the key.
    assert {r["path"] for r in capture.received} == {f"/services/T000/B000/{SLACK_SECRET}"}
    assert {r["path"] for r in dead.received} == {f"/services/T111/B111/{DEAD_SECRET}"}
    signed = forward.received[0]
    Webhook(WEBHOOK_SECRET).verify(signed["body"], signed["headers"])
    assert sim.stats()["tasks_created"] == 3
    assert not leaks(logs, secrets), f"in the log: {leaks(logs, secrets)}"
    found = {name for answer in answers for name in leaks(answer, secrets)}
    assert not found, f"in API answers: {found}"
    # Nor do they reach the destinations' bodies (a Slack message, a forwarded job).
    posted = [r["body"].decode(errors="replace") for r in capture.received + forward.received]
    assert not {name for body in posted for name in leaks(body, secrets)}
