"""EXPERIMENTS, not the service: taskhook run with one thing changed, to measure it.

    python -m bench.hookpath -c bench-config.yaml [--mode service|litestar|fast]
        [--nodelay] [--no-events] [--switch-interval S]

``bench/run.py`` runs it for the "experiment" rows of the ingest table (and the store
latencies with ``--nodelay``). It builds the app with ``service.app.create_app`` and runs it
with ``service.server.Server``, exactly as ``taskhook serve`` does, then changes one thing:

- ``--mode litestar``: callbacks go through the Litestar route ``receive_callback`` even
  when the service puts a fast path of its own in front of Litestar (the "before").
- ``--mode fast``: a raw ASGI layer (``FastHooks`` below) answers
  ``POST /hooks/{job_id}/{token}`` and hands everything else, and the lifespan, to Litestar
  (the "after", for a service without a fast path). It does what the route does, in the same
  order, with the same store call: the token checked in constant time before the body is
  read, at most 1 MiB read, the Standard Webhooks signature when configured, the JSON parsed
  and validated, one ``Store.record_callback`` (the group-commit queue), the metrics counter,
  the events wake-up, and the same JSON answer.
- ``--nodelay``: TCP_NODELAY on the listening socket (accepted sockets inherit it).
  ``Server.run`` binds the socket itself and hands it to uvicorn; asyncio sets TCP_NODELAY
  only on sockets whose ``proto`` is ``IPPROTO_TCP``, and ``uvicorn.Config.bind_socket``
  creates one with ``proto`` 0, so Nagle's algorithm stays on: the body of each answer (a
  second small write after the headers) waits for the client's delayed ACK, about 40 ms.
- ``--no-events``: the loop that verifies stored callbacks does nothing (the callbacks stay
  stored, unverified): the ingest path alone, without the post-ack work beside it.
- ``--switch-interval``: ``sys.setswitchinterval`` (how long a thread keeps the GIL when
  another one wants it; 5 ms by default).

Nothing under ``service/`` is changed; only public names of it are used.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time
from typing import Annotated, Any

import msgspec
from msgspec import Meta
from service import config as config_module
from service.app import create_app
from service.errors import AuthError, RequestError, TaskhookError
from service.security import signature_problem, token_ok
from service.server import Server

MAX_BYTES = 1024 * 1024
_JSON = [(b"content-type", b"application/json")]


class Callback(msgspec.Struct):
    status: Annotated[str, Meta(min_length=1, max_length=64)]
    task_id: Annotated[str, Meta(min_length=1, max_length=200)] | None = None


class _TooLarge(RequestError):
    status_code = 413


def _parse(body: bytes) -> tuple[Callback, dict[str, Any]]:
    try:
        payload = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise RequestError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise RequestError("the body must be a JSON object")
    try:
        return msgspec.convert(payload, Callback), payload
    except msgspec.ValidationError as exc:
        raise RequestError(f"invalid callback: {exc}") from None


async def _read_body(receive: Any) -> bytes:
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestError("client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BYTES:
            raise _TooLarge("the body is larger than 1 MiB")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


class FastHooks:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        parts = scope["path"].split("/") if scope["type"] == "http" else ()
        if (
            len(parts) != 4
            or parts[1] != "hooks"
            or scope["method"] != "POST"
            or not all(parts[2:])
        ):
            await self.app(scope, receive, send)
            return
        try:
            status, answer = 200, await self._hook(scope, receive, parts[2], parts[3])
        except TaskhookError as exc:
            status = exc.status_code
            answer = {"status_code": status, "detail": exc.message}
        headers = _JSON + ([(b"www-authenticate", b"Bearer")] if status == 401 else [])
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": msgspec.json.encode(answer)})

    async def _hook(self, scope: dict, receive: Any, job_id: str, token: str) -> dict[str, Any]:
        rt = self.app.state.runtime
        if not token_ok(rt.config.server.secret, job_id, token):
            rt.metrics.callbacks.labels("bad_token").inc()
            raise AuthError("invalid callback token")
        body = await _read_body(receive)
        signing_secret = rt.config.upstream.signing_secret
        if signing_secret:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            problem = signature_problem(signing_secret, headers, body, time.time())
            if problem:
                rt.metrics.callbacks.labels("bad_signature").inc()
                raise AuthError(f"invalid callback signature: {problem}")
        parsed, payload = _parse(body)
        now = time.time()
        event = await rt.store.record_callback(
            job_id, parsed.task_id, parsed.status, payload, now, now + rt.engine.reconcile_after
        )
        rt.metrics.callbacks.labels("duplicate" if event.duplicate else "stored").inc()
        if not event.duplicate:
            rt.engine.notify("events")
        return {"received": True, "duplicate": event.duplicate, "event_id": event.id}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--mode", choices=["service", "litestar", "fast"], default="service")
    parser.add_argument(
        "--nodelay",
        action="store_true",
        help="set TCP_NODELAY on the listening socket (accepted ones inherit it)",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        help="sys.setswitchinterval(): how long a thread may hold the GIL",
    )
    parser.add_argument(
        "--no-events",
        action="store_true",
        help="pause the loop that verifies stored callbacks (they wait, stored)",
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    if args.no_events:
        from service import worker

        async def nothing(self: Any) -> int:
            return 0

        worker.Workers.events_once = nothing  # type: ignore[method-assign]
    config = config_module.load(args.config)
    app = create_app(config)
    # service.server.Server as the service uses it (it binds the socket itself), with the
    # ASGI app swapped for the mode's
    server = Server(app, config.server.host, config.server.port, args.log_level)
    if args.mode == "litestar":
        server.config.app = app
    elif args.mode == "fast":
        server.config.app = FastHooks(app)
    if args.nodelay:
        bind = server.config.bind_socket

        def bind_nodelay() -> socket.socket:
            sock = bind()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock

        server.config.bind_socket = bind_nodelay  # type: ignore[method-assign]
    server.run()
    return 0


def service_has_fast_path() -> bool:
    """Whether ``service.server.Server`` already puts an ASGI layer in front of Litestar."""
    from litestar import Litestar

    app = Litestar(route_handlers=[], openapi_config=None)
    return Server(app, "127.0.0.1", 0, "warning").config.app is not app


if __name__ == "__main__":
    sys.exit(main())
