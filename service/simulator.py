"""A local simulator of the Unified Tasks API, with fault injection, for tests and demos.

It speaks the wire format of ``/work/shared/reference/wire-format.md``:

- ``POST /v1/tasks`` and ``GET /v1/tasks/{task_id}`` with Bearer auth and the
  ``{"code", "success", "data" | "message"}`` envelope; models, kinds, input validation and
  dry-run prices come from :mod:`service.catalog`.
- Tasks go ``pending -> processing -> completed | failed`` on timers; when one ends and it has
  a ``callback_url`` the simulator POSTs the callback (outputs under ``data``), retrying after
  ``callback_retry_delays`` when the receiver answers non-2xx or cannot be reached.
- ``GET /files/{task_id}/{name}`` serves the outputs without auth, like a CDN: a real PNG,
  an MP4 (``ftyp`` box then filler) or an MP3 (ID3 header then MPEG frames). With
  ``output_bytes > 0`` video and audio files have exactly that size and are streamed.
- Faults, drawn from a seedable ``random.Random``: failed tasks, duplicated, dropped or late
  callbacks, and creates answered 429 (``Retry-After: 1``) or 500.
- Admin routes under ``/_sim`` (stats, task list, runtime settings, finish a task now).
  They need **no auth**: the simulator is a test tool and must never face the internet.

The simulator does not refuse callback URLs on private addresses (tests use 127.0.0.1).

Mounting: ``Simulator.router(path)`` returns a Litestar ``Router`` to include in any app; the
standalone ``Simulator.create_app()`` mounts it at ``/`` and closes the simulator on shutdown.
An app that includes the router itself must ``await simulator.aclose()`` on shutdown. Output
URLs use ``public_url`` when set, otherwise the scheme, host and mount prefix of the create
request (``http://127.0.0.1:8000/simulator/files/<task_id>/output.mp4``).

Run it alone with ``python -m service.simulator --port 8001 --fail-rate 0.1``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import logging
import random
import secrets
import struct
import sys
import time
import zlib
from collections.abc import AsyncIterator, Coroutine
from typing import Annotated, Any

import httpx
import msgspec
from litestar import Litestar, Request, Response, Router, get, post, put
from litestar.exceptions import HTTPException
from litestar.response import Stream

from service import catalog
from service.security import sign

log = logging.getLogger(__name__)

Rate = Annotated[float, msgspec.Meta(ge=0, le=1)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]


class SimulatorSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Timings and fault knobs; the admin API can change them while the simulator runs."""

    api_key: str = "sim-key"
    pending_seconds: Seconds = 0.2
    processing_seconds: Seconds = 0.8
    fail_rate: Rate = 0.0
    duplicate_rate: Rate = 0.0
    drop_rate: Rate = 0.0
    late_rate: Rate = 0.0
    late_seconds: Seconds = 30.0
    create_429_rate: Rate = 0.0
    create_500_rate: Rate = 0.0
    create_slow_rate: Rate = 0.0
    create_slow_seconds: Seconds = 35.0
    callback_retry_delays: tuple[Seconds, ...] = (1.0, 2.0, 4.0)
    callback_timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    output_bytes: Annotated[int, msgspec.Meta(ge=0)] = 0
    public_url: str | None = None
    seed: int | None = None
    signing_secret: Annotated[str, msgspec.Meta(pattern=r"^whsec_[A-Za-z0-9+/=]+$")] | None = None


FAILURE_MESSAGES = (
    "Generation failed: content policy",
    "Generation failed: upstream timeout",
    "Generation failed: internal error",
)
SMALL_MEDIA_BYTES = 2048
DUPLICATE_GAP_SECONDS = 0.05
CHUNK_BYTES = 64 * 1024
PNG_SIDE = 64
MEDIA_TYPES = {"png": "image/png", "mp4": "video/mp4", "mp3": "audio/mpeg"}


class CreateBody(msgspec.Struct):
    """The body of ``POST /v1/tasks``."""

    model: str
    input: Any
    callback_url: str | None = None
    dry_run: bool = False


class CompleteBody(msgspec.Struct):
    """The optional body of ``POST /_sim/tasks/{task_id}/complete``."""

    status: str = "completed"
    error_message: str = FAILURE_MESSAGES[0]


class Plan(msgspec.Struct, kw_only=True):
    """The faults drawn for one task when it is created."""

    fail: bool = False
    error_message: str = FAILURE_MESSAGES[0]
    drop: bool = False
    duplicate: bool = False
    late: bool = False


class SimTask(msgspec.Struct, kw_only=True):
    """One simulated task and its outputs."""

    id: str
    model: str
    kind: str
    input: Any
    callback_url: str | None
    base_url: str
    plan: Plan
    created_at: float
    status: str = "pending"
    output: dict[str, Any] | None = None
    error_message: str | None = None
    files: dict[str, int] = msgspec.field(default_factory=dict)  # name -> size in bytes

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed")


class ApiError(Exception):
    """An error answered with the API's envelope."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# --- responses ----------------------------------------------------------------------------


def ok(data: Any) -> Response:
    return Response({"code": 200, "success": True, "data": data}, status_code=200)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"code": status, "success": False, "message": message}
    return Response(body, status_code=status, headers=headers)


def api_error_handler(_: Request, exc: ApiError) -> Response:
    return error_response(exc.status, exc.message, exc.headers)


def http_exception_handler(_: Request, exc: HTTPException) -> Response:
    return error_response(exc.status_code, str(exc.detail), exc.headers)


# --- generated files ----------------------------------------------------------------------


def png_bytes(seed: str, side: int = PNG_SIDE) -> bytes:
    """A valid ``side`` x ``side`` RGB PNG of one colour derived from ``seed``."""
    colour = hashlib.sha256(seed.encode()).digest()[:3]
    raw = (b"\x00" + colour * side) * side
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def png_chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data)
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def mp4_head(size: int) -> bytes:
    """An ``ftyp`` box, then the header of a ``free`` box that fills the file to ``size``."""
    ftyp = struct.pack(">I4s4sI4s4s4s", 28, b"ftyp", b"isom", 512, b"isom", b"iso2", b"mp41")
    rest = size - len(ftyp)
    if rest > 0xFFFFFFFF:
        return ftyp + struct.pack(">I4sQ", 1, b"free", rest)
    if rest >= 8:
        return ftyp + struct.pack(">I4s", rest, b"free")
    return ftyp


MP3_ID3 = b"ID3\x04\x00\x00\x00\x00\x00\x00"  # ID3v2.4, no flags, empty tag
MP3_FRAME = b"\xff\xfb\x90\x64" + bytes(413)  # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz


def media_parts(extension: str, size: int) -> tuple[bytes, bytes]:
    """The head and the repeated filler unit of a generated video or audio file."""
    if extension == "mp4":
        return mp4_head(size), b"\x00"
    return MP3_ID3, MP3_FRAME


async def media_chunks(extension: str, size: int) -> AsyncIterator[bytes]:
    """Exactly ``size`` bytes of a generated file, in chunks, never all in memory."""
    head, unit = media_parts(extension, size)
    head = head[:size]
    yield head
    block = unit * max(1, CHUNK_BYTES // len(unit))
    remaining = size - len(head)
    while remaining > 0:
        chunk = block[:remaining]
        remaining -= len(chunk)
        yield chunk


# --- outputs ------------------------------------------------------------------------------


def output_names(task: SimTask) -> dict[str, list[str]]:
    """The output fields of a task and their file names, by the model's kind."""
    if task.kind == "video":
        return {"video_url": ["output.mp4"]}
    if task.kind == "image":
        return {"image_url": ["output.png"]}
    if task.kind == "audio" and task.model.startswith("suno-ai/"):
        return {"audio_urls": ["clip-1.mp3", "clip-2.mp3"]}
    if task.kind == "audio":
        return {"audio_url": ["output.mp3"]}
    return {}


def build_output(task: SimTask, media_bytes: int) -> tuple[dict[str, Any], dict[str, int]]:
    """The ``output`` mapping and the served files (name -> size) of a completed task."""
    names = output_names(task)
    if not names:
        return {"text": f"[Verse]\nSimulated {task.model} output for task {task.id}."}, {}
    output: dict[str, Any] = {}
    files: dict[str, int] = {}
    for field, field_names in names.items():
        urls = [f"{task.base_url}/files/{task.id}/{name}" for name in field_names]
        output[field] = urls if field.endswith("_urls") else urls[0]
        for name in field_names:
            files[name] = media_bytes or SMALL_MEDIA_BYTES
    return output, files


def status_view(task: SimTask) -> dict[str, Any]:
    data: dict[str, Any] = {"task_id": task.id, "status": task.status}
    if task.status == "completed":
        data["output"] = task.output
    elif task.status == "failed":
        data["error_message"] = task.error_message
    return data


def _where(url: str) -> str:
    """A URL without its path: callback paths carry a token, which logs must not."""
    parts = httpx.URL(url)
    return f"{parts.scheme}://{parts.host}:{parts.port or ''}"


def callback_payload(task: SimTask) -> dict[str, Any]:
    if task.status == "completed":
        return {"task_id": task.id, "status": "completed", "data": task.output}
    return {"task_id": task.id, "status": "failed", "error_message": task.error_message}


def admin_view(task: SimTask) -> dict[str, Any]:
    return {
        "id": task.id,
        "model": task.model,
        "status": task.status,
        "callback_url": task.callback_url,
        "input": task.input,
        "output": task.output,
        "error_message": task.error_message,
        "created_at": task.created_at,
    }


# --- request helpers ----------------------------------------------------------------------


def decode_body(raw: bytes, type_: type[Any]) -> Any:
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"invalid request body: {exc}") from exc


def check_callback_url(url: str | None) -> None:
    if url is not None and not url.startswith(("http://", "https://")):
        raise ApiError(400, "callback_url: must be an http:// or https:// URL")


def check_input(body: CreateBody) -> None:
    problems = catalog.validate(body.model, body.input)
    if catalog.get(body.model) is None:
        detail = "; ".join(p.message for p in problems) or repr(body.model)
        raise ApiError(404, f"model not found: {detail}")
    if problems:
        listed = "; ".join(f"{p.path}: {p.message}" for p in problems)
        raise ApiError(400, f"invalid input: {listed}")


def mount_base(request: Request, suffix: str) -> str:
    """``scheme://host:port`` plus the mount prefix: the request path without ``suffix``."""
    url = request.url
    path = url.path.rstrip("/")
    prefix = path[: -len(suffix)] if path.endswith(suffix) else ""
    return f"{url.scheme}://{url.netloc}{prefix}"


# --- the simulator ------------------------------------------------------------------------


class Simulator:
    """The simulated API: tasks, timers, callback deliveries and stats."""

    def __init__(self, settings: SimulatorSettings | None = None) -> None:
        self.settings = settings or SimulatorSettings()
        self._rng = random.Random(self.settings.seed)
        self._tasks: dict[str, SimTask] = {}
        self._lifecycles: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._client: httpx.AsyncClient | None = None
        self._stats = dict.fromkeys(
            ("tasks_created", "callbacks_sent", "callbacks_failed", "creates_refused"), 0
        )
        self._stats["callbacks_dropped"] = 0

    @property
    def tasks_created(self) -> int:
        return self._stats["tasks_created"]

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._stats)

    # -- wiring --

    def router(self, path: str = "/") -> Router:
        """All routes, to include in any Litestar app at ``path``."""
        return Router(
            path,
            route_handlers=route_handlers(self),
            exception_handlers={ApiError: api_error_handler, HTTPException: http_exception_handler},
            include_in_schema=False,
        )

    def create_app(self) -> Litestar:
        """A standalone app with the router at ``/``; its shutdown closes the simulator."""
        return Litestar(
            route_handlers=[self.router("/")],
            exception_handlers={HTTPException: http_exception_handler},
            on_shutdown=[self.aclose],
            openapi_config=None,
        )

    async def aclose(self) -> None:
        """Cancels the timers and pending deliveries, and closes the HTTP client."""
        pending = list(self._background)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._background.clear()
        self._lifecycles.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"User-Agent": "taskhook-simulator"}
            self._client = httpx.AsyncClient(headers=headers, follow_redirects=False)
        return self._client

    def _chance(self, rate: float) -> bool:
        if rate <= 0:
            return False
        return rate >= 1 or self._rng.random() < rate

    # -- the public API --

    def authorize(self, request: Request) -> None:
        given = request.headers.get("authorization", "").encode()
        expected = f"Bearer {self.settings.api_key}".encode()
        if not hmac.compare_digest(given, expected):
            raise ApiError(401, "invalid or missing API key", {"WWW-Authenticate": "Bearer"})

    def inject_create_fault(self) -> None:
        if self._chance(self.settings.create_429_rate):
            self._stats["creates_refused"] += 1
            raise ApiError(429, "rate limited (simulated)", {"Retry-After": "1"})
        if self._chance(self.settings.create_500_rate):
            self._stats["creates_refused"] += 1
            raise ApiError(500, "internal error (simulated)")

    async def create(self, request: Request) -> Response:
        self.authorize(request)
        self.inject_create_fault()
        body: CreateBody = decode_body(await request.body(), CreateBody)
        check_callback_url(body.callback_url)
        check_input(body)
        if body.dry_run:
            cost = float(catalog.price(body.model, body.input))
            return ok({"dry_run": True, "model": body.model, "cost": cost})
        task = self._new_task(body, mount_base(request, "/v1/tasks"))
        if self._chance(self.settings.create_slow_rate):
            # The task exists, but the answer comes late: a client that timed out meanwhile
            # cannot know it was created.
            await asyncio.sleep(self.settings.create_slow_seconds)
        return ok({"task_id": task.id, "status": task.status})

    def status(self, request: Request, task_id: str) -> Response:
        self.authorize(request)
        return ok(status_view(self._find(task_id)))

    def file(self, task_id: str, name: str) -> Response:
        task = self._tasks.get(task_id)
        if task is None or name not in task.files:
            raise ApiError(404, "file not found")
        extension = name.rsplit(".", 1)[-1]
        media_type = MEDIA_TYPES[extension]
        if extension == "png":
            return Response(png_bytes(task.id), media_type=media_type)
        size = task.files[name]
        headers = {"Content-Length": str(size)}
        return Stream(media_chunks(extension, size), media_type=media_type, headers=headers)

    # -- tasks --

    def _find(self, task_id: str) -> SimTask:
        task = self._tasks.get(task_id)
        if task is None:
            raise ApiError(404, "task not found")
        return task

    def _draw_plan(self) -> Plan:
        settings = self.settings
        return Plan(
            fail=self._chance(settings.fail_rate),
            error_message=self._rng.choice(FAILURE_MESSAGES),
            drop=self._chance(settings.drop_rate),
            duplicate=self._chance(settings.duplicate_rate),
            late=self._chance(settings.late_rate),
        )

    def _new_task(self, body: CreateBody, base_url: str) -> SimTask:
        spec = catalog.get(body.model)
        task = SimTask(
            id=secrets.token_hex(8),
            model=body.model,
            kind=spec.kind if spec else "text",
            input=body.input,
            callback_url=body.callback_url,
            base_url=(self.settings.public_url or base_url).rstrip("/"),
            plan=self._draw_plan(),
            created_at=time.time(),
        )
        self._tasks[task.id] = task
        self._stats["tasks_created"] += 1
        self._lifecycles[task.id] = self._spawn(self._lifecycle(task))
        return task

    async def _lifecycle(self, task: SimTask) -> None:
        await asyncio.sleep(self.settings.pending_seconds)
        task.status = "processing"
        await asyncio.sleep(self.settings.processing_seconds)
        self._lifecycles.pop(task.id, None)
        if task.plan.fail:
            self._finish(task, "failed", task.plan.error_message)
        else:
            self._finish(task, "completed")

    def _finish(
        self, task: SimTask, status: str, error_message: str | None = None, *, now: bool = False
    ) -> None:
        task.status = status
        if status == "completed":
            task.output, task.files = build_output(task, self.settings.output_bytes)
        else:
            task.error_message = error_message or FAILURE_MESSAGES[0]
        self._schedule_callback(task, now=now)

    # -- callbacks --

    def _schedule_callback(self, task: SimTask, *, now: bool) -> None:
        if task.callback_url is None:
            return
        if task.plan.drop:
            self._stats["callbacks_dropped"] += 1
            log.info("simulator: dropping the callback of task %s", task.id)
            return
        body = msgspec.json.encode(callback_payload(task))
        delay = self.settings.late_seconds if task.plan.late and not now else 0.0
        self._spawn(self._deliver_all(task.callback_url, body, delay, task.plan.duplicate))

    async def _deliver_all(self, url: str, body: bytes, delay: float, duplicate: bool) -> None:
        await asyncio.sleep(delay)
        await self._deliver(url, body)
        if duplicate:
            await asyncio.sleep(DUPLICATE_GAP_SECONDS)
            await self._deliver(url, body)

    async def _deliver(self, url: str, body: bytes) -> bool:
        for delay in (0.0, *self.settings.callback_retry_delays):
            await asyncio.sleep(delay)
            if await self._post_once(url, body):
                self._stats["callbacks_sent"] += 1
                return True
        self._stats["callbacks_failed"] += 1
        log.warning("simulator: gave up delivering a callback to %s", _where(url))
        return False

    async def _post_once(self, url: str, body: bytes) -> bool:
        headers = {"Content-Type": "application/json"}
        if self.settings.signing_secret:
            msg_id = "msg_" + hashlib.sha256(body).hexdigest()[:24]
            timestamp = int(time.time())
            headers.update(
                {
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": sign(
                        self.settings.signing_secret, msg_id, timestamp, body
                    ),
                }
            )
        try:
            response = await self._http().post(
                url, content=body, headers=headers, timeout=self.settings.callback_timeout
            )
        except httpx.HTTPError as exc:
            log.info("simulator: callback to %s failed: %r", _where(url), exc)
            return False
        return response.is_success

    # -- admin --

    def list_tasks(self) -> list[dict[str, Any]]:
        return [admin_view(task) for task in self._tasks.values()]

    def update_settings(self, raw: bytes) -> SimulatorSettings:
        """Applies a partial JSON of settings fields; every field is validated."""
        patch = decode_body(raw, dict[str, Any])
        merged = {**msgspec.structs.asdict(self.settings), **patch}
        try:
            settings = msgspec.convert(merged, SimulatorSettings)
        except msgspec.ValidationError as exc:
            raise ApiError(400, f"invalid settings: {exc}") from exc
        self.settings = settings
        if "seed" in patch:
            self._rng.seed(settings.seed)
        return settings

    def complete_now(self, task_id: str, raw: bytes) -> dict[str, Any]:
        """Finishes a task immediately and delivers its callback now (no late delay)."""
        task = self._find(task_id)
        body = decode_body(raw, CompleteBody) if raw.strip() else CompleteBody()
        if body.status not in ("completed", "failed"):
            raise ApiError(400, "status: must be 'completed' or 'failed'")
        if task.finished:
            raise ApiError(409, f"task already {task.status}")
        lifecycle = self._lifecycles.pop(task.id, None)
        if lifecycle is not None:
            lifecycle.cancel()
        self._finish(task, body.status, body.error_message, now=True)
        return status_view(task)


def route_handlers(sim: Simulator) -> list[Any]:
    """The route handlers, bound to ``sim`` by closure (routers are deep-copied on include).

    Path parameters are read from ``request.path_params``: declaring them as plain arguments is
    deprecated in recent Litestar releases, and ``FromPath`` does not exist in older 2.x ones.
    """

    @post("/v1/tasks", status_code=200)
    async def create_task(request: Request) -> Response:
        return await sim.create(request)

    @get("/v1/tasks/{task_id:str}")
    async def get_task(request: Request) -> Response:
        return sim.status(request, request.path_params["task_id"])

    @get("/files/{task_id:str}/{name:str}")
    async def get_file(request: Request) -> Response:
        return sim.file(request.path_params["task_id"], request.path_params["name"])

    @get("/_sim/stats")
    async def stats() -> dict[str, int]:
        return sim.stats

    @get("/_sim/tasks")
    async def list_tasks() -> list[dict[str, Any]]:
        return sim.list_tasks()

    @put("/_sim/settings")
    async def update_settings(request: Request) -> SimulatorSettings:
        return sim.update_settings(await request.body())

    @post("/_sim/tasks/{task_id:str}/complete", status_code=200)
    async def complete_task(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        return ok(sim.complete_now(task_id, await request.body()))

    return [create_task, get_task, get_file, stats, list_tasks, update_settings, complete_task]


# --- command line -------------------------------------------------------------------------


def parse_delays(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


OPTIONS: tuple[tuple[str, Any, str], ...] = (
    ("--api-key", str, "the API key clients must send as Bearer"),
    ("--pending-seconds", float, "seconds a task stays pending"),
    ("--processing-seconds", float, "seconds a task stays processing"),
    ("--fail-rate", float, "share of tasks that end failed (0..1)"),
    ("--duplicate-rate", float, "share of callbacks delivered twice"),
    ("--drop-rate", float, "share of callbacks never delivered"),
    ("--late-rate", float, "share of callbacks delayed by --late-seconds"),
    ("--late-seconds", float, "extra delay of late callbacks"),
    ("--create-429-rate", float, "share of creates answered 429"),
    ("--create-500-rate", float, "share of creates answered 500"),
    (
        "--create-slow-rate",
        float,
        "share of creates answered only after create-slow-seconds (the task is created at once)",
    ),
    ("--create-slow-seconds", float, "delay of slow create answers"),
    ("--callback-retry-delays", parse_delays, "comma-separated retry delays, e.g. 1,2,4"),
    ("--callback-timeout", float, "timeout of each callback attempt, in seconds"),
    ("--output-bytes", int, "size of video/audio outputs; 0 = small files"),
    ("--public-url", str, "base URL of output file links"),
    ("--seed", int, "seed of the fault random generator"),
    ("--signing-secret", str, "sign callbacks per Standard Webhooks with this whsec_ secret"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--host``, ``--port`` and one flag per setting (unset flags keep the default)."""
    parser.description = (
        "A local simulator of the Unified Tasks API (POST/GET /v1/tasks, callbacks, output "
        "files) with fault injection, for integration tests. Admin routes under /_sim."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="port to listen on (8001)")
    defaults = SimulatorSettings()
    for flag, type_, help_text in OPTIONS:
        field = flag[2:].replace("-", "_")
        default = getattr(defaults, field)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        shown = "none" if shown is None else shown
        parser.add_argument(flag, type=type_, default=None, help=f"{help_text} (default {shown})")


def settings_from_args(args: argparse.Namespace) -> SimulatorSettings:
    """The settings given on the command line; raises ``msgspec.ValidationError`` if invalid."""
    values = {}
    for flag, _, _ in OPTIONS:
        field = flag[2:].replace("-", "_")
        value = getattr(args, field, None)
        if value is not None:
            values[field] = value
    return msgspec.convert(values, SimulatorSettings)


def run(args: argparse.Namespace) -> int:
    """Runs the standalone simulator with uvicorn until interrupted."""
    import uvicorn

    try:
        settings = settings_from_args(args)
    except msgspec.ValidationError as exc:
        print(f"invalid simulator settings: {exc}", file=sys.stderr)
        return 2
    # httpx logs each URL at INFO, and callback URLs carry a token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    simulator = Simulator(settings)
    print(f"Unified Tasks API simulator on http://{args.host}:{args.port}", flush=True)
    print(f"API key: {settings.api_key}", flush=True)
    uvicorn.run(simulator.create_app(), host=args.host, port=args.port, log_level="info")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Simulator of the Unified Tasks API")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
