"""taskhook's error tree. Each class's docstring is its default message.

    TaskhookError                     (500)
    ├── ConfigError                   the configuration file is invalid; carries every problem
    ├── BudgetExceeded                a follow-up would take its chain over its budget
    ├── RequestError                  (400) a malformed request
    │   ├── AuthError                 (401) missing or wrong credentials
    │   ├── NotFound                  (404)
    │   ├── Conflict                  (409)
    │   ├── InvalidInput              (422) the input fails the model's documented rules
    │   └── UpstreamRefused           (the upstream's 4xx) the upstream refused the task
    └── UpstreamError                 the upstream could not be used
        ├── UpstreamUnavailable       (503) 429, 5xx, or no connection: safe to retry
        ├── UpstreamAmbiguous         a failure after the request was sent: never resend blindly
        └── UpstreamAuthFailed        (502) the upstream refused taskhook's own API key

The HTTP mapping lives in ``service.app.error_response``, and nowhere else.
"""

from __future__ import annotations

from typing import Any


class TaskhookError(Exception):
    """taskhook failed."""

    status_code = 500

    def __init__(self, message: str | None = None, *, details: list[Any] | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.details = details or []
        super().__init__(self.message)


class ConfigError(TaskhookError):
    """The configuration is invalid."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class RequestError(TaskhookError):
    """The request is malformed."""

    status_code = 400


class AuthError(RequestError):
    """Missing or wrong credentials."""

    status_code = 401


class NotFound(RequestError):
    """Not found."""

    status_code = 404


class Conflict(RequestError):
    """The request conflicts with the current state."""

    status_code = 409


class InvalidInput(RequestError):
    """The input does not satisfy the model's documented parameters."""

    status_code = 422


class UpstreamRefused(RequestError):
    """The upstream refused the task."""

    def __init__(self, message: str | None = None, *, status_code: int = 400) -> None:
        self.status_code = status_code
        super().__init__(message)


class BudgetExceeded(TaskhookError):
    """The follow-up would take its chain over its budget."""

    status_code = 409


class UpstreamError(TaskhookError):
    """The upstream could not be used."""

    status_code = 502
    retry_after: float | None = None


class UpstreamUnavailable(UpstreamError):
    """The upstream is unavailable (rate limited, failing or unreachable); safe to retry."""

    status_code = 503

    def __init__(self, message: str | None = None, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class UpstreamAmbiguous(UpstreamError):
    """The request was sent but no answer came back; the upstream may have acted on it."""


class UpstreamAuthFailed(UpstreamError):
    """The upstream refused taskhook's API key (401); check upstream.api_key."""
