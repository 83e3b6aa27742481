"""The client of the Unified Tasks API: create a task, read its status.

One pooled ``httpx.AsyncClient`` for the whole process. Answers come in an envelope
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

import httpx
import msgspec

from service.errors import (
    UpstreamAmbiguous,
    UpstreamAuthFailed,
    UpstreamRefused,
    UpstreamUnavailable,
)

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


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


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def _decode(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class UpstreamClient:
    def __init__(
        self, base_url: str, api_key: str, http: httpx.AsyncClient, timeout: float = 30.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self.http = http
        self.timeout = timeout

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
            response = await self.http.post(
                f"{self.base_url}/v1/tasks", json=body, headers=self._headers, timeout=self.timeout
            )
        except _NOT_SENT as exc:
            raise UpstreamUnavailable(f"cannot reach the upstream: {exc!r}") from exc
        except httpx.HTTPError as exc:
            if dry_run:
                raise UpstreamUnavailable(f"upstream request failed: {exc!r}") from exc
            raise UpstreamAmbiguous(
                f"the create request was sent but failed before an answer: {exc!r}"
            ) from exc
        data = self._data(response)
        if not dry_run and not isinstance(data.get("task_id"), str):
            raise UpstreamAmbiguous("the upstream accepted the task but sent no task_id")
        return data

    async def status(self, task_id: str) -> TaskState:
        try:
            response = await self.http.get(
                f"{self.base_url}/v1/tasks/{task_id}", headers=self._headers, timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"cannot read the task's status: {exc!r}") from exc
        data = self._data(response)
        status = str(data.get("status", ""))
        output = data.get("output")
        return TaskState(
            task_id=str(data.get("task_id") or task_id),
            status=status,
            output=output if isinstance(output, dict) else None,
            error=failure_reason(data) if status == "failed" else None,
        )

    def _data(self, response: httpx.Response) -> dict[str, Any]:
        body = _decode(response)
        code = response.status_code
        if code == 401:
            raise UpstreamAuthFailed()
        if code == 429 or code >= 500:
            reason = error_message(body, response.reason_phrase or "")
            raise UpstreamUnavailable(
                f"upstream answered {code}: {reason}", retry_after=_retry_after(response)
            )
        if code >= 400 or not isinstance(body, dict) or body.get("success") is False:
            status = code if code >= 400 else 400
            raise UpstreamRefused(
                error_message(body, f"upstream answered {code}"), status_code=status
            )
        data = body.get("data")
        return data if isinstance(data, dict) else {}
