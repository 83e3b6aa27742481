"""Posting JSON to a destination, with the answer classified for the retry policy."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec

from handlers import HandlerFailed, StepContext
from service import http as outgoing

_RETRYABLE_4XX = (408, 409, 425, 429)
_ANSWER_BYTES = 64 * 1024  # what is read of an answer (only its status is used)


class Posted(msgspec.Struct):
    status_code: int


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value or ""))
    except ValueError:
        return None


async def post(
    session: aiohttp.ClientSession,
    url: str,
    content: bytes,
    headers: dict[str, str] | None = None,
    timeout: float = 15.0,
) -> Posted:
    """POSTs ``content`` as JSON; 2xx returns, anything else raises ``HandlerFailed``."""
    all_headers = {"content-type": "application/json", **(headers or {})}
    try:
        async with session.post(
            url,
            data=content,
            headers=all_headers,
            timeout=outgoing.timeout(timeout),
            allow_redirects=False,
        ) as response:
            await response.content.read(_ANSWER_BYTES)
            code, retry_after = response.status, response.headers.get("retry-after")
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
        raise HandlerFailed(f"not a valid URL: {_safe(url)}", retryable=False) from exc
    except outgoing.FAILURES as exc:
        raise HandlerFailed(f"POST {_safe(url)} failed: {type(exc).__name__}") from exc
    if 200 <= code < 300:
        return Posted(status_code=code)
    retryable = code in _RETRYABLE_4XX or code >= 500
    raise HandlerFailed(
        f"POST {_safe(url)} answered {code}",
        retryable=retryable,
        retry_after=_retry_after(retry_after),
    )


async def destination(step: StepContext, field: str, raw: str) -> str:
    """The rendered destination URL. A URL built from job data (a template) is held to the
    same private-network rule as downloads: whoever can submit a job must not be able to
    point taskhook at an internal address. A fixed URL is the operator's own choice."""
    url = str(step.render(field))
    if "{{" in raw or "{%" in raw:
        await step.services.fetcher.check(url)
    return url


def _safe(url: str) -> str:
    """The URL without its path and query: chat webhook URLs carry their secret there."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an invalid URL"
    return f"{parts.scheme}://{parts.hostname or ''}{port}/…"


def result_of(response: Posted, **extra: Any) -> dict[str, Any]:
    return {"status_code": response.status_code, **extra}
