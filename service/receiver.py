"""The callback receiver: ``POST /hooks/{job_id}/{token}``, on a raw ASGI fast path.

Callbacks come in bursts (a batch of jobs finishes within seconds) and the upstream gives each
about ten seconds, so the receiver answers them without the framework's routing, parameter
parsing and serialisation: it checks the token (constant time), reads at most 1 MiB, parses
the JSON, and stores the event, committed, before answering (``Store.record_callback``;
concurrent callbacks share one commit). ``ingest`` holds the logic; the Litestar route of
the same path (kept for the OpenAPI document) and the fast path both call it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from service.errors import AuthError, RequestError, TaskhookError
from service.security import signature_problem, token_ok

CALLBACK_MAX_BYTES = 1024 * 1024
STORED, DUPLICATE = "stored", "duplicate"
log = logging.getLogger("taskhook")


class CallbackBody(msgspec.Struct):
    status: Annotated[str, Meta(min_length=1, max_length=64)]
    task_id: Annotated[str, Meta(min_length=1, max_length=200)] | None = None


class TooLarge(RequestError):
    """The body is larger than 1 MiB."""

    status_code = 413


def parse(body: bytes) -> tuple[CallbackBody, dict[str, Any]]:
    try:
        payload = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise RequestError(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise RequestError("the body is nested too deeply") from None
    except UnicodeDecodeError:
        raise RequestError("the body is not valid UTF-8") from None
    if not isinstance(payload, dict):
        raise RequestError("the body must be a JSON object")
    try:
        return msgspec.convert(payload, CallbackBody), payload
    except msgspec.ValidationError as exc:
        raise RequestError(f"invalid callback: {exc}") from None


async def ingest(
    rt: Any,
    job_id: str,
    token: str,
    headers: Mapping[str, str],
    read_body: Callable[[], Awaitable[bytes]],
) -> dict[str, Any]:
    """Checks, parses and durably stores one callback; raises ``TaskhookError`` (4xx).
    Counts itself in ``engine.receiving`` while it runs: verification yields to it."""
    engine = rt.engine
    engine.receiving += 1
    try:
        if not token_ok(rt.config.server.secret, job_id, token):
            rt.metrics.callback("bad_token")
            raise AuthError("invalid callback token")
        body = await read_body()
        signing_secret = rt.config.upstream.signing_secret
        if signing_secret:
            problem = signature_problem(signing_secret, headers, body, time.time())
            if problem:
                rt.metrics.callback("bad_signature")
                raise AuthError(f"invalid callback signature: {problem}")
        parsed, payload = parse(body)
        now = time.time()  # one round trip: the job is looked up and the event stored together
        event = await rt.store.record_callback(
            job_id, parsed.task_id, parsed.status, payload, now, now + engine.reconcile_after
        )
    finally:
        engine.receiving -= 1
    rt.metrics.callback(DUPLICATE if event.duplicate else STORED)
    if not event.duplicate:
        engine.notify("events")
    return {"received": True, "duplicate": event.duplicate, "event_id": event.id}


async def _read(receive: Callable[[], Awaitable[dict]], headers: Mapping[str, str]) -> bytes:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > CALLBACK_MAX_BYTES:
        raise TooLarge()
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > CALLBACK_MAX_BYTES:
            raise TooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


_JSON = [(b"content-type", b"application/json")]


class FastPath:
    """An ASGI app in front of Litestar that answers ``POST /hooks/{job_id}/{token}`` itself
    and hands every other request (and lifespan) to Litestar."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        parts = scope["path"].split("/") if scope["type"] == "http" else ()
        if (
            len(parts) != 4
            or parts[1] != "hooks"
            or scope["method"] != "POST"
            or not parts[2]
            or not parts[3]
        ):
            await self.app(scope, receive, send)
            return
        # ASGI header names are lower case already
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            status, answer = (
                200,
                await ingest(
                    self.state.runtime, parts[2], parts[3], headers, lambda: _read(receive, headers)
                ),
            )
        except TaskhookError as exc:
            status, answer = (
                exc.status_code,
                {"status_code": exc.status_code, "detail": exc.message},
            )
        except Exception:
            log.exception("unhandled error in POST /hooks/{job_id}/{token}")
            status, answer = 500, {"status_code": 500, "detail": "internal error"}
        extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
        await send({"type": "http.response.start", "status": status, "headers": _JSON + extra})
        await send({"type": "http.response.body", "body": msgspec.json.encode(answer)})
