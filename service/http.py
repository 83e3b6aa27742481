"""taskhook's outgoing HTTP: one pooled aiohttp session for the whole process.

Every job makes four outgoing requests (create, verify, download, forward), so the client's
cost per request is most of the service's CPU per job. Measured here (bench/, 32 concurrent
GETs against a no-op server): httpx 0.28 costs 2.6 ms of CPU per request, aiohttp 0.2 ms.

Failures are sorted by whether the request can have reached the server, which decides
whether a create may be resent: ``not_sent`` is true only for failures before any byte of
the request was written (no connection, DNS, TLS handshake, pool or connect timeout, a URL
that cannot be requested).
"""

from __future__ import annotations

import os

import aiohttp

USER_AGENT = "taskhook"

# Everything a request can raise besides a programming error (timeouts are TimeoutError).
FAILURES: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError)

_NOT_SENT: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectorError,  # refused, unreachable, DNS, TLS handshake and certificate
    aiohttp.ConnectionTimeoutError,  # waiting for a pooled connection or for the connect
    aiohttp.InvalidURL,
    aiohttp.NonHttpUrlClientError,
)


def not_sent(exc: BaseException) -> bool:
    return isinstance(exc, _NOT_SENT)


def timeout(seconds: float, connect: float = 10.0) -> aiohttp.ClientTimeout:
    """``seconds`` for the whole exchange, ``connect`` of it for a connection."""
    return aiohttp.ClientTimeout(total=seconds, connect=min(connect, seconds))


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy")


def proxies_configured(environ: dict[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return any(name.lower() in _PROXY_VARIABLES and value for name, value in environ.items())


def new_session() -> aiohttp.ClientSession:
    """The process's session: up to 100 connections, kept alive 15 s. Proxies from the
    environment (``HTTPS_PROXY``, ``NO_PROXY`` ...) are honoured, as httpx did, when one is
    set; otherwise aiohttp is told not to look, because looking costs two thread-pool round
    trips per request (the proxy variables and ~/.netrc)."""
    connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=15)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout(30.0),
        headers={"user-agent": USER_AGENT},
        trust_env=proxies_configured(),
        raise_for_status=False,
    )


def describe(exc: BaseException) -> str:
    """An error's class and message, for notes and step errors (never a request body)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
