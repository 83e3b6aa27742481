"""The ``s3`` handler against moto's S3 server over real HTTP (no in-process patching).

The service runs as a subprocess with the simulator as its upstream, exactly as in the e2e
tests; a few handler-level tests drive ``S3Handler`` directly with a real ``Fetcher`` for what
the service cannot be made to do locally (a public URL that redirects to a private one, a
server that lies about its size).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from moto.server import ThreadedMotoServer

from handlers import HandlerFailed, StepContext
from handlers import s3 as s3_module
from handlers.s3 import S3Config, S3Handler
from service.config import parse
from service.errors import ConfigError
from service.fetch import Fetcher, forbidden
from service.http import new_session
from service.templates import compile_tree
from tests.conftest import base_config
from tests.support import ServerThread, free_port, lifespan, wait_until

MIB = 1024 * 1024
BUCKET = "media-archive"
REGION = "us-east-1"
KEY_ID = "AKIATESTKEY000000000"
SECRET_KEY = "test-secret-access-key-do-not-leak"
VIDEO = {"model": "google/veo-3.1-fast", "input": {"prompt": "x"}}
PUBLIC_STAND_IN = "127.0.0.2"  # a loopback address the redirect test's check lets through


# ---- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """A boto3 client of the moto server; nothing of the developer's AWS setup leaks in."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET_KEY,
    )
    yield client
    client.close()
    httpx.post(f"{moto_url}/moto-api/reset").raise_for_status()


def archive_options(moto_url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "s3",
        "bucket": BUCKET,
        "endpoint_url": moto_url,
        "region": REGION,
        "access_key_id": KEY_ID,
        "secret_access_key": SECRET_KEY,
        **overrides,
    }


def s3_config(
    sim: Any,
    tmp_path: Path,
    moto_url: str,
    archive: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    handlers = {"archive": archive_options(moto_url, **(archive or {}))}
    steps = ["archive"]
    if after is not None:
        handlers["after"] = after
        steps.append("after")
    rules = [{"name": "mirror", "match": {"status": "completed"}, "handlers": steps}]
    return base_config(sim.url, tmp_path, handlers=handlers, rules=rules, **sections)


def run_of(job: dict[str, Any], handler: str = "archive", generation: int = 0) -> dict[str, Any]:
    return next(r for r in job["runs"] if r["handler"] == handler and r["generation"] == generation)


def object_keys(s3: Any) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def pending_uploads(s3: Any) -> list[dict[str, Any]]:
    return s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])


def stream_sha256(chunks: Any) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        size += len(chunk)
        digest.update(chunk)
    return size, digest.hexdigest()


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


def reset_peak(pid: int) -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False when not allowed here."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# ---- end to end, the service as a subprocess ------------------------------------------------


def test_outputs_are_mirrored_and_later_steps_see_them(
    sim, capture, tmp_path, moto_url, s3, service_factory
):
    s3.create_bucket(Bucket=BUCKET)
    sim.configure(output_bytes=12 * MIB)  # videos: a multipart upload of 5 + 5 + 2 MiB
    after = {
        "type": "webhook",
        "url": f"{capture.url}/webhook",
        "body": {
            "job": "{{ job.id }}",
            "url": "{{ steps.archive.urls[0] }}",
            "presigned": "{{ steps.archive.presigned_urls[0] }}",
        },
    }
    config = s3_config(
        sim, tmp_path, moto_url, archive={"presign": "1h", "part_size": 5 * MIB}, after=after
    )
    service = service_factory(config)
    image_id = service.submit().json()["id"]
    video_id = service.submit(**VIDEO).json()["id"]

    for job_id, content_type in ((image_id, "image/png"), (video_id, "video/mp4")):
        job = service.wait_job(job_id, timeout=30)
        assert [(r["handler"], r["status"]) for r in job["runs"]] == [
            ("archive", "succeeded"),
            ("after", "succeeded"),
        ], job["runs"]
        (output,) = job["outputs"]
        served = httpx.get(output["url"]).content
        key = f"{job['model']}/{job_id}/{output['filename']}"
        digest = hashlib.sha256(served).hexdigest()
        result = dict(run_of(job)["result"])
        (presigned,) = result.pop("presigned_urls")
        assert result == {
            "urls": [f"s3://{BUCKET}/{key}"],
            "keys": [key],
            "sizes": [len(served)],
            "sha256": [digest],
            "content_types": [content_type],
        }
        assert presigned.startswith(f"{moto_url}/{BUCKET}/{key}?")
        assert "X-Amz-Expires=3600" in presigned and "X-Amz-Signature=" in presigned
        assert SECRET_KEY not in presigned
        stored = s3.get_object(Bucket=BUCKET, Key=key)
        assert stored["Body"].read() == served
        assert stored["ContentType"] == content_type
        assert stored["Metadata"] == {"sha256": digest}

        (posted,) = [b for b in capture.bodies("/webhook") if b["job"] == job_id]
        assert posted["url"] == f"s3://{BUCKET}/{key}"
        assert posted["presigned"] == presigned
        download = httpx.get(posted["presigned"])
        assert download.status_code == 200 and download.content == served

    assert len(served) == 12 * MIB  # the video went through the multipart path
    assert sorted(object_keys(s3)) == sorted(
        f"{m}/{j}/{f}"
        for m, j, f in (
            ("google/nano-banana", image_id, "output.png"),
            (VIDEO["model"], video_id, "output.mp4"),
        )
    )
    assert pending_uploads(s3) == []


@pytest.mark.slow
def test_a_200_mib_output_is_streamed_in_bounded_memory(
    sim, tmp_path, moto_url, s3, service_factory
):
    s3.create_bucket(Bucket=BUCKET)
    service = service_factory(s3_config(sim, tmp_path, moto_url))
    pid = service.process.pid

    warm = service.wait_job(service.submit().json()["id"], timeout=30)  # imports, client, pools
    assert run_of(warm)["status"] == "succeeded"
    before = memory_kib(pid)
    exact = reset_peak(pid)

    size = 200 * MIB
    sim.configure(output_bytes=size)
    job = service.wait_job(service.submit(**VIDEO).json()["id"], timeout=60)
    after = memory_kib(pid)
    growth_mib = (after["VmHWM"] - before["VmRSS"]) / 1024
    print(
        f"\nservice memory: baseline VmRSS {before['VmRSS'] / 1024:.1f} MiB "
        f"(VmHWM {before['VmHWM'] / 1024:.1f} MiB, peak reset: {exact}); after the "
        f"200 MiB job VmHWM {after['VmHWM'] / 1024:.1f} MiB, VmRSS "
        f"{after['VmRSS'] / 1024:.1f} MiB; peak growth {growth_mib:.1f} MiB"
    )
    assert run_of(job)["status"] == "succeeded", run_of(job)
    assert growth_mib < 64

    (output,) = job["outputs"]
    with httpx.stream("GET", output["url"], timeout=60) as response:
        expected = stream_sha256(response.iter_bytes(MIB))
    assert expected[0] == size
    result = run_of(job)["result"]
    assert (result["sizes"], result["sha256"]) == ([size], [expected[1]])
    (key,) = result["keys"]
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentLength"] == size and head["Metadata"] == {"sha256": expected[1]}
    assert head["ContentType"] == "video/mp4"
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"]
    assert stream_sha256(body.iter_chunks(MIB)) == expected
    assert pending_uploads(s3) == []


def test_a_private_address_is_refused(sim, tmp_path, moto_url, s3, service_factory):
    s3.create_bucket(Bucket=BUCKET)
    config = s3_config(sim, tmp_path, moto_url, security={"allow_private_networks": False})
    service = service_factory(config)
    job = service.wait_job(service.submit().json()["id"], timeout=30)
    run = run_of(job)
    assert run["status"] == "dead" and run["attempts"] == 1
    assert "private or local address" in run["last_error"]
    assert "security.allow_private_networks" in run["last_error"]
    assert object_keys(s3) == [] and pending_uploads(s3) == []


def test_a_retried_step_overwrites_its_objects(sim, tmp_path, moto_url, s3, service_factory):
    sim.configure(output_bytes=6 * MIB)  # a multipart upload of 5 + 1 MiB
    config = s3_config(sim, tmp_path, moto_url, archive={"part_size": 5 * MIB})
    service = service_factory(config)
    job_id = service.submit(**VIDEO).json()["id"]

    first = run_of(service.wait_job(job_id, timeout=30))  # the bucket does not exist yet
    assert first["status"] == "dead" and first["attempts"] == 1
    assert "NoSuchBucket" in first["last_error"]
    assert f"bucket {BUCKET!r} does not exist" in first["last_error"]
    assert SECRET_KEY not in first["last_error"] and KEY_ID not in first["last_error"]

    s3.create_bucket(Bucket=BUCKET)
    replayed = service.http.post(f"/v1/jobs/{job_id}/replay")
    assert replayed.json()["steps_scheduled"] == 1
    retried = run_of(
        wait_until(lambda: (j := service.job(job_id)) and run_of(j)["status"] == "succeeded" and j)
    )
    assert retried["last_error"] is None

    forced = service.http.post(f"/v1/jobs/{job_id}/replay", json={"force": True})
    assert forced.json()["steps_scheduled"] == 1
    job = service.wait_job(job_id, timeout=30)
    again = run_of(job, generation=1)
    assert again["status"] == "succeeded"

    assert again["result"] == retried["result"]
    (key,) = retried["result"]["keys"]
    assert object_keys(s3) == [key]  # one object per key, however often the step ran
    assert pending_uploads(s3) == []
    data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert len(data) == 6 * MIB
    assert hashlib.sha256(data).hexdigest() == retried["result"]["sha256"][0]


def test_a_step_is_retried_until_the_store_answers(sim, tmp_path, s3, service_factory):
    s3.create_bucket(Bucket=BUCKET)  # moto's state is per process: a second server shares it
    port = free_port()
    config = s3_config(sim, tmp_path, f"http://127.0.0.1:{port}")
    service = service_factory(config)
    job_id = service.submit().json()["id"]
    failing = wait_until(
        lambda: (
            (j := service.job(job_id))["runs"] and run_of(j)["status"] == "retrying" and run_of(j)
        )
    )
    assert "could not be reached" in failing["last_error"]
    assert SECRET_KEY not in failing["last_error"]

    late = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    late.start()
    try:
        job = service.wait_job(job_id, timeout=30)
    finally:
        late.stop()
    run = run_of(job)
    assert run["status"] == "succeeded" and run["attempts"] >= 2
    assert object_keys(s3) == run["result"]["keys"]


# ---- the handler driven directly, with a real Fetcher and real servers ----------------------


def redirect_app(location: str) -> Callable:
    """A raw ASGI app answering every GET with a 302 to ``location``."""

    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        headers = [(b"location", location.encode()), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 302, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    return app


def stream_app(size: int, content_length: bool) -> tuple[Callable, list[str]]:
    """A raw ASGI app serving ``size`` bytes in 1 MiB chunks, with or without its length."""
    requests: list[str] = []

    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        requests.append(scope["path"])
        headers = [(b"content-type", b"video/mp4")]
        if content_length:
            headers.append((b"content-length", str(size).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        block = bytes(range(256)) * 4096
        for start in range(0, size, MIB):
            await send(
                {
                    "type": "http.response.body",
                    "body": block[: min(MIB, size - start)],
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b""})

    return app, requests


def run_handler(
    handler: S3Handler,
    url: str,
    allow_private: bool = True,
    max_bytes: int = 1 << 30,
    is_forbidden: Callable[[str], bool] = forbidden,
) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with new_session() as session:
            fetcher = Fetcher(
                session,
                allow_private=allow_private,
                max_bytes=max_bytes,
                is_forbidden=is_forbidden,
            )
            step = StepContext(
                context={
                    "outputs": [{"url": url, "filename": url.rsplit("/", 1)[-1]}],
                    "job": {"model": "test/model", "id": "job_direct"},
                },
                templates={"key": compile_tree(handler.config.key)},
                services=types.SimpleNamespace(fetcher=fetcher),
                step_id=1,
                attempt=1,
                idempotency_key="job_direct.mirror.0.0",
            )
            return await handler.run(step)

    return asyncio.run(main())


def direct_handler(moto_url: str, **overrides: Any) -> S3Handler:
    options = archive_options(moto_url, **overrides)
    options.pop("type")
    return S3Handler(S3Config(**options))


def test_a_redirect_to_a_private_address_is_refused(sim, moto_url, s3):
    s3.create_bucket(Bucket=BUCKET)
    served, requests = stream_app(3 * MIB, content_length=True)
    with (
        ServerThread(served) as private,
        ServerThread(redirect_app(f"{private.url}/files/output.mp4"), PUBLIC_STAND_IN) as public,
    ):
        # The first hop stands in for a public host: the check treats its loopback address
        # as public (and only that one); its answer is a redirect to the private server.
        def only_127_0_0_1(address: str) -> bool:
            return address != PUBLIC_STAND_IN and forbidden(address)

        with pytest.raises(HandlerFailed) as refused:
            run_handler(
                direct_handler(moto_url),
                f"{public.url}/files/output.mp4",
                allow_private=False,
                is_forbidden=only_127_0_0_1,
            )
        assert refused.value.retryable is False
        assert "private or local address" in str(refused.value)
        assert "127.0.0.1" in str(refused.value)
        assert requests == [] and object_keys(s3) == []

        # The same redirect is followed when private networks are allowed.
        result = run_handler(direct_handler(moto_url), f"{public.url}/files/output.mp4")
        assert requests == ["/files/output.mp4"]
        assert result["sizes"] == [3 * MIB] and result["content_types"] == ["video/mp4"]
        assert object_keys(s3) == ["test/model/job_direct/output.mp4"]


def test_a_plain_private_url_is_refused_before_any_request(moto_url, s3):
    s3.create_bucket(Bucket=BUCKET)
    served, requests = stream_app(MIB, content_length=True)
    with ServerThread(served) as private, pytest.raises(HandlerFailed) as refused:
        run_handler(direct_handler(moto_url), f"{private.url}/a.mp4", allow_private=False)
    assert refused.value.retryable is False and "private or local" in str(refused.value)
    assert requests == [] and object_keys(s3) == []


def test_the_download_cap_is_enforced_and_a_started_upload_aborted(moto_url, s3):
    s3.create_bucket(Bucket=BUCKET)
    handler = direct_handler(moto_url, part_size=5 * MIB)
    unannounced, _ = stream_app(20 * MIB, content_length=False)
    announced, requests = stream_app(20 * MIB, content_length=True)
    with ServerThread(unannounced) as liar, ServerThread(announced) as honest:
        # No Content-Length: two parts are sent before the cap is crossed, then aborted.
        with pytest.raises(HandlerFailed) as capped:
            run_handler(handler, f"{liar.url}/big.mp4", max_bytes=12 * MIB)
        assert capped.value.retryable is False
        assert "download cap of 12582912 bytes" in str(capped.value)
        # A Content-Length over the cap is refused before anything is uploaded.
        with pytest.raises(HandlerFailed) as declared:
            run_handler(handler, f"{honest.url}/big.mp4", max_bytes=12 * MIB)
        assert "download cap" in str(declared.value) and requests == ["/big.mp4"]
    assert object_keys(s3) == [] and pending_uploads(s3) == []


def test_objects_over_the_copy_limit_get_their_metadata_by_a_multipart_copy(
    moto_url, s3, monkeypatch
):
    monkeypatch.setattr(s3_module, "COPY_LIMIT", 6 * MIB)
    monkeypatch.setattr(s3_module, "COPY_PART", 5 * MIB)
    s3.create_bucket(Bucket=BUCKET)
    app, _ = stream_app(12 * MIB, content_length=True)
    with ServerThread(app) as server:
        result = run_handler(direct_handler(moto_url, part_size=5 * MIB), f"{server.url}/copy.mp4")
        expected = httpx.get(f"{server.url}/copy.mp4").content
    (key,) = result["keys"]
    stored = s3.get_object(Bucket=BUCKET, Key=key)
    assert stored["Body"].read() == expected
    assert stored["Metadata"] == {"sha256": hashlib.sha256(expected).hexdigest()}
    assert stored["ContentType"] == "video/mp4"
    assert pending_uploads(s3) == []


def test_an_unreachable_store_is_a_retryable_failure(moto_url, s3):
    app, _ = stream_app(MIB, content_length=True)
    handler = direct_handler(f"http://127.0.0.1:{free_port()}")
    with ServerThread(app) as server, pytest.raises(HandlerFailed) as failed:
        run_handler(handler, f"{server.url}/a.mp4")
    assert failed.value.retryable is True
    assert "could not be reached" in str(failed.value)


# ---- error classification and configuration ------------------------------------------------


def client_error(code: str, status: int, message: str = "x") -> ClientError:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PutObject")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "retryable", "says"),
    [
        (client_error("AccessDenied", 403), False, "access denied to s3://media-archive/k"),
        (client_error("NoSuchBucket", 404), False, "bucket 'media-archive' does not exist"),
        (client_error("InvalidAccessKeyId", 403, f"key {KEY_ID} unknown"), False, "access_key_id"),
        (client_error("SignatureDoesNotMatch", 403, SECRET_KEY), False, "secret_access_key"),
        (client_error("Weird", 400, f"echo {SECRET_KEY} {KEY_ID}"), False, "echo *** ***"),
        (client_error("SlowDown", 503), True, "SlowDown (HTTP 503)"),
        (client_error("InternalError", 500), True, "InternalError"),
        (client_error("RequestTimeout", 400), True, "RequestTimeout"),
        (client_error("TooManyRequests", 429), True, "HTTP 429"),
        (EndpointConnectionError(endpoint_url="http://s3.local:9000/b/k"), True, "reached"),
        (NoCredentialsError(), False, "no usable AWS credentials"),
    ],
)
def test_store_errors_are_classified_without_leaking_credentials(error, retryable, says):
    handler = S3Handler(S3Config(bucket=BUCKET, access_key_id=KEY_ID, secret_access_key=SECRET_KEY))
    failure = handler._failure(error, "put_object", "k")
    assert failure.retryable is retryable
    assert says in str(failure)
    assert SECRET_KEY not in str(failure) and KEY_ID not in str(failure)


def test_configuration_is_checked_when_it_loads(sim, tmp_path, moto_url):
    good = s3_config(sim, tmp_path, moto_url, archive={"presign": "2h"})
    archive = parse(good).rules[0].steps[0].handler
    assert archive.config.presign == "2h" and archive.config.part_size == 8 * MIB

    bad = s3_config(
        sim, tmp_path, moto_url, archive={"buckett": "x", "part_size": MIB, "presign": "soon"}
    )
    with pytest.raises(ConfigError) as error:
        parse(bad)
    text = str(error.value)
    assert "handlers.archive.buckett: unknown key (did you mean 'bucket'?)" in text
    assert "handlers.archive.part_size" in text and "handlers.archive.presign" in text

    odd = s3_config(
        sim, tmp_path, moto_url, archive={"presign": "8d", "secret_access_key": None, "key": "/"}
    )
    del odd["handlers"]["archive"]["secret_access_key"]
    with pytest.raises(ConfigError) as error:
        parse(odd)
    text = str(error.value)
    assert "(s3).access_key_id: access_key_id and secret_access_key must be set together" in text
    assert "(s3).presign: must be between 1s and 7d" in text
    assert "(s3).key: renders an empty key" in text

    with pytest.raises(ConfigError) as error:
        parse(
            s3_config(
                sim,
                tmp_path,
                moto_url,
                after={
                    "type": "slack",
                    "webhook_url": "http://x.example/h",
                    "text": "{{ steps.archive.presigned_url[0] }}",
                },
            )
        )
    assert "presigned_url" in str(error.value)
