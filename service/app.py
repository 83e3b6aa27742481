"""The app factory: a few lines that assemble the routes, the lifespan and the error mapping."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response
from litestar.exceptions import ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from service import __version__
from service.api import api_router, public_handlers
from service.config import Config, friendly
from service.errors import TaskhookError
from service.runtime import Runtime

log = logging.getLogger("taskhook")


def error_response(_: Request, exc: TaskhookError) -> Response:
    """The one place where taskhook's errors become HTTP answers."""
    body: dict[str, Any] = {"status_code": exc.status_code, "detail": exc.message}
    if exc.details:
        body["extra"] = exc.details
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return Response(body, status_code=exc.status_code, headers=headers)


def _problem(item: Any) -> dict[str, str]:
    key = str(item.get("key") or "body")
    message = str(item.get("message", ""))
    if message == f"'{key}'":  # Litestar's word for "nothing was sent"
        message = "is missing: send a JSON object"
    path = "body" if key == "data" else key
    if item.get("source") in ("query", "header", "path") and path != "body":
        path = f"{item['source']} parameter {path}"
    return {"path": path, "message": friendly(message)}


def validation_response(_: Request, exc: ValidationException) -> Response:
    """Litestar's own 400s, rewritten so that ``detail`` says what was wrong."""
    problems = [_problem(item) for item in exc.extra or [] if isinstance(item, dict)]
    if problems:
        detail = "invalid request: " + "; ".join(f"{p['path']}: {p['message']}" for p in problems)
    else:
        detail = f"invalid request: {exc.detail}"
    body: dict[str, Any] = {"status_code": 400, "detail": detail}
    if problems:
        body["extra"] = problems
    return Response(body, status_code=400)


def too_deep_response(_: Request, __: RecursionError) -> Response:
    detail = "invalid request: the JSON document is nested too deeply"
    return Response({"status_code": 400, "detail": detail}, status_code=400)


def bad_encoding_response(_: Request, __: UnicodeDecodeError) -> Response:
    detail = "invalid request: the body is not valid UTF-8"
    return Response({"status_code": 400, "detail": detail}, status_code=400)


def internal_error_response(request: Request, exc: Exception) -> Response:
    """Logs what failed (the route's template, never its path: paths carry tokens)."""
    route = "/".join(request.route_handler.paths) if request.scope.get("route_handler") else "?"
    log.error("unhandled error in %s %s", request.method, route, exc_info=exc)
    return Response({"status_code": 500, "detail": "internal error"}, status_code=500)


def create_app(
    config: Config,
    *,
    extra_handlers: Sequence[Any] = (),
    on_shutdown: Sequence[Callable[[], Any]] = (),
) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        runtime = Runtime(config)
        app.state.runtime = runtime
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    return Litestar(
        route_handlers=[api_router, *public_handlers, *extra_handlers],
        lifespan=[lifespan],
        on_shutdown=list(on_shutdown),
        logging_config=None,  # the CLI configures logging (--log-level)
        exception_handlers={
            TaskhookError: error_response,
            ValidationException: validation_response,
            RecursionError: too_deep_response,
            UnicodeDecodeError: bad_encoding_response,
            HTTP_500_INTERNAL_SERVER_ERROR: internal_error_response,
        },
        openapi_config=OpenAPIConfig(
            title="taskhook",
            version=__version__,
            components=Components(
                security_schemes={"BearerToken": SecurityScheme(type="http", scheme="bearer")}
            ),
        ),
    )
