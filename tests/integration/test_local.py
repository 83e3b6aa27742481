"""The ``local`` handler driven directly: a real download from a server on 127.0.0.1 into a
real directory, and paths that would leave the directory refused before any request."""

from __future__ import annotations

import asyncio
import hashlib
import types
from pathlib import Path
from typing import Any

import pytest

from handlers import HandlerFailed, StepContext
from handlers.local import LocalConfig, LocalHandler
from service.fetch import Fetcher
from service.http import new_session
from service.templates import compile_tree
from tests.support import ServerThread, capture_app, lifespan

BODY = bytes(range(256)) * 64


async def serve_file(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    headers = [(b"content-type", b"image/png"), (b"content-length", str(len(BODY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


def run(handler: LocalHandler, url: str, metadata: dict[str, Any]) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with new_session() as session:
            step = StepContext(
                context={
                    "outputs": [{"url": url, "filename": "out.png"}],
                    "job": {"id": "job_1", "metadata": metadata},
                },
                templates={"path": compile_tree(handler.config.path)},
                services=types.SimpleNamespace(
                    fetcher=Fetcher(session, allow_private=True, max_bytes=1 << 20)
                ),
                step_id=1,
                attempt=1,
                idempotency_key="k",
            )
            return await handler.run(step)

    return asyncio.run(main())


def test_an_output_is_copied_into_the_directory(tmp_path: Path) -> None:
    handler = LocalHandler(
        LocalConfig(
            directory=str(tmp_path / "files"), path="{{ job.metadata.sub }}/{{ output.filename }}"
        )
    )
    with ServerThread(serve_file) as server:
        result = run(handler, f"{server.url}/a.png", {"sub": "batch-1"})
    target = tmp_path / "files" / "batch-1" / "out.png"
    assert target.read_bytes() == BODY
    assert result["keys"] == ["batch-1/out.png"] and result["sizes"] == [len(BODY)]
    assert result["sha256"] == [hashlib.sha256(BODY).hexdigest()]
    # a second job through the same handler (its directory resolved once) lands beside it
    with ServerThread(serve_file) as server:
        run(handler, f"{server.url}/a.png", {"sub": "batch-2"})
    assert (tmp_path / "files" / "batch-2" / "out.png").read_bytes() == BODY


@pytest.mark.parametrize("sub", ["..", "../..", "x/../..", "/../../etc"])
def test_a_path_leaving_the_directory_is_refused_before_any_request(
    tmp_path: Path, sub: str
) -> None:
    app, requests = capture_app()
    handler = LocalHandler(
        LocalConfig(
            directory=str(tmp_path / "files"), path="{{ job.metadata.sub }}/{{ output.filename }}"
        )
    )
    with ServerThread(app) as server, pytest.raises(HandlerFailed) as refused:
        run(handler, f"{server.url}/a.png", {"sub": sub})
    assert refused.value.retryable is False and "leaves the directory" in str(refused.value)
    assert requests == [] and not (tmp_path / "out.png").exists()
