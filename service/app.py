"""The app factory: a few lines that assemble the routes, the lifespan and the error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from service import __version__
from service.api import api_router, public_handlers
from service.config import Config
from service.errors import TaskhookError
from service.runtime import Runtime


def error_response(_: Request, exc: TaskhookError) -> Response:
    """The one place where taskhook's errors become HTTP answers."""
    body: dict[str, Any] = {"status_code": exc.status_code, "detail": exc.message}
    if exc.details:
        body["extra"] = exc.details
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return Response(body, status_code=exc.status_code, headers=headers)


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
        exception_handlers={TaskhookError: error_response},
        openapi_config=OpenAPIConfig(
            title="taskhook",
            version=__version__,
            components=Components(
                security_schemes={"BearerToken": SecurityScheme(type="http", scheme="bearer")}
            ),
        ),
    )
