"""Posting JSON to a destination, with the answer classified for the retry policy."""

from __future__ import annotations

from typing import Any

import httpx

from handlers import HandlerFailed, StepContext

_RETRYABLE_4XX = (408, 409, 425, 429)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


async def post(
    http: httpx.AsyncClient,
    url: str,
    content: bytes,
    headers: dict[str, str] | None = None,
    timeout: float = 15.0,
) -> httpx.Response:
    """POSTs ``content`` as JSON; 2xx returns, anything else raises ``HandlerFailed``."""
    all_headers = {"content-type": "application/json", **(headers or {})}
    try:
        response = await http.post(url, content=content, headers=all_headers, timeout=timeout)
    except httpx.InvalidURL as exc:
        raise HandlerFailed(f"not a valid URL: {exc}", retryable=False) from exc
    except httpx.HTTPError as exc:
        raise HandlerFailed(f"POST {_safe(url)} failed: {type(exc).__name__}") from exc
    code = response.status_code
    if 200 <= code < 300:
        return response
    retryable = code in _RETRYABLE_4XX or code >= 500
    raise HandlerFailed(
        f"POST {_safe(url)} answered {code}",
        retryable=retryable,
        retry_after=_retry_after(response),
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
    parts = httpx.URL(url)
    return f"{parts.scheme}://{parts.host}{':' + str(parts.port) if parts.port else ''}/…"


def result_of(response: httpx.Response, **extra: Any) -> dict[str, Any]:
    return {"status_code": response.status_code, **extra}
