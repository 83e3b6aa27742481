"""The client of the Unified Tasks API: create a task, read its status.

The process's pooled aiohttp session (``service.http``). Answers come in an envelope
``{"code", "success", "data"}``; errors carry a message under one of several names, which
``error_message`` finds. Failures map onto ``service.errors``:

- 400 / 402 / 404 -> ``UpstreamRefused`` (the caller's request is wrong or unaffordable)
- 401 -> ``UpstreamAuthFailed`` (taskhook's key is wrong)
- 429 / 5xx, and connection failures before the request was sent -> ``UpstreamUnavailable``
- a failure after the request was sent -> ``UpstreamAmbiguous`` for a create (the task may
  exist), ``UpstreamUnavailable`` for a status read (reads are safe to repeat)
"""

from __future__ import annotations

from typing import Any

import aiohttp
import msgspec

from service import http
from service.errors import (
    UpstreamAmbiguous,
    UpstreamAuthFailed,
    UpstreamRefused,
    UpstreamUnavailable,
)


class TaskState(msgspec.Struct, kw_only=True):
    task_id: str
    status: str  # pending | processing | completed | failed
    output: dict[str, Any] | None = None
    error: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in ("completed", "failed")


def error_message(body: Any, default: str) -> str:
    """The human-readable message of an error envelope, whatever the field is called."""
    if not isinstance(body, dict):
        return default
    for key in ("message", "error_message", "error", "detail", "msg"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict):
            nested = value.get("message")
            if isinstance(nested, str) and nested:
                return nested
    data = body.get("data")
    return error_message(data, default) if isinstance(data, dict) else default


def failure_reason(data: dict[str, Any]) -> str:
    return error_message(data, "the upstream reported a failure without a reason")


class Answer(msgspec.Struct):
    """What the client keeps of an HTTP answer (read whole: envelopes are small)."""

    status_code: int
    reason: str
    retry_after: float | None
    body: Any


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value or ""))
    except ValueError:
        return None


def _decode(content: bytes) -> Any:
    try:
        return msgspec.json.decode(content)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return None


class UpstreamClient:
    def __init__(
        self, base_url: str, api_key: str, session: aiohttp.ClientSession, timeout: float = 30.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._json_headers = {**self._headers, "content-type": "application/json"}
        self.session = session
        self.timeout = http.timeout(timeout)

    async def _request(self, method: str, url: str, body: bytes | None) -> Answer:
        headers = self._headers if body is None else self._json_headers
        async with self.session.request(
            method, url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
        ) as response:
            content = await response.read()
            return Answer(
                status_code=response.status,
                reason=response.reason or "",
                retry_after=_retry_after(response.headers.get("retry-after")),
                body=_decode(content),
            )

    async def create(
        self,
        model: str,
        input: dict[str, Any],
        *,
        callback_url: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Creates a task (or prices it with ``dry_run``); returns the envelope's ``data``."""
        body: dict[str, Any] = {"model": model, "input": input}
        if callback_url:
            body["callback_url"] = callback_url
        if dry_run:
            body["dry_run"] = True
        try:
            response = await self._request(
                "POST", f"{self.base_url}/v1/tasks", msgspec.json.encode(body)
            )
        except http.FAILURES as exc:
            if http.not_sent(exc):
                raise UpstreamUnavailable(
                    f"cannot reach the upstream: {http.describe(exc)}"
                ) from exc
            if dry_run:
                raise UpstreamUnavailable(f"upstream request failed: {http.describe(exc)}") from exc
            raise UpstreamAmbiguous(
                "the create request was sent but failed before an answer: " + http.describe(exc)
            ) from exc
        data = self._data(response)
        if not dry_run and not isinstance(data.get("task_id"), str):
            raise UpstreamAmbiguous("the upstream accepted the task but sent no task_id")
        return data

    async def status(self, task_id: str) -> TaskState:
        try:
            response = await self._request("GET", f"{self.base_url}/v1/tasks/{task_id}", None)
        except http.FAILURES as exc:
            raise UpstreamUnavailable(
                f"cannot read the task's status: {http.describe(exc)}"
            ) from exc
        data = self._data(response)
        status = str(data.get("status", ""))
        output = data.get("output")
        return TaskState(
            task_id=str(data.get("task_id") or task_id),
            status=status,
            output=output if isinstance(output, dict) else None,
            error=failure_reason(data) if status == "failed" else None,
        )

    def _data(self, response: Answer) -> dict[str, Any]:
        body = response.body
        code = response.status_code
        if code == 401:
            raise UpstreamAuthFailed()
        if code == 429 or code >= 500:
            reason = error_message(body, response.reason)
            raise UpstreamUnavailable(
                f"upstream answered {code}: {reason}", retry_after=response.retry_after
            )
        if code >= 400 or not isinstance(body, dict) or body.get("success") is False:
            status = code if code >= 400 else 400
            raise UpstreamRefused(
                error_message(body, f"upstream answered {code}"), status_code=status
            )
        data = body.get("data")
        return data if isinstance(data, dict) else {}
