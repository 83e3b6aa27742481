"""Safe downloads of output URLs, shared by the handlers that copy files.

Only http and https; every host is resolved and refused when any of its addresses is
loopback, private, link-local, unspecified, multicast or reserved (unless
``security.allow_private_networks``), and so is every redirect target; a size cap and
timeouts bound each download. Files are written to a temporary name, synced and renamed, so
a retried step overwrites instead of leaving a half-written file.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import msgspec
from yarl import URL

from handlers import HandlerFailed
from service import http

_MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
_CHUNK = 1024 * 1024


class Download(msgspec.Struct):
    size: int
    sha256: str
    content_type: str


def forbidden(address: str) -> bool:
    """Whether an address is one taskhook must not fetch from (unless configured to)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_multicast
        or ip.is_reserved
    )


class Fetcher:
    """``is_forbidden`` decides which resolved addresses are refused (default ``forbidden``);
    the tests pass a narrower one to stand a loopback server in for a public host."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        allow_private: bool,
        max_bytes: int,
        timeout: float = 60.0,
        is_forbidden: Callable[[str], bool] = forbidden,
    ) -> None:
        self.session = session
        self.allow_private = allow_private
        self.max_bytes = max_bytes
        # the whole download may take long: connect and each read are bounded instead
        self.timeout = aiohttp.ClientTimeout(total=None, connect=10.0, sock_read=timeout)
        self.is_forbidden = is_forbidden

    async def check(self, url: str) -> str | None:
        """Refuses a URL that taskhook must not fetch (raises a non-retryable failure);
        returns the vetted address to connect to (None when private networks are allowed)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HandlerFailed(
                f"refused to fetch {url!r}: only http and https URLs", retryable=False
            )
        if self.allow_private:
            return None
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                parts.hostname, parts.port or 443, type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise HandlerFailed(f"cannot resolve {parts.hostname!r}: {exc}") from exc
        if any(self.is_forbidden(info[4][0]) for info in infos):
            raise HandlerFailed(
                f"refused to fetch {url!r}: {parts.hostname} resolves to a private or local "
                "address (set security.allow_private_networks to allow it)",
                retryable=False,
            )
        return str(infos[0][4][0])

    @staticmethod
    def target(url: str, address: str | None) -> tuple[URL, dict[str, Any]]:
        """The URL to GET and the request's options: with an ``address``, the connection goes
        to the address that was checked, not to a second DNS answer (which could point
        somewhere else: DNS rebinding); the Host header and the TLS name stay the URL's."""
        parsed = URL(url)
        if address is None:
            return parsed, {}
        options: dict[str, Any] = {"headers": {"Host": parsed.host_port_subcomponent}}
        if parsed.scheme == "https":
            options["server_hostname"] = parsed.raw_host
        return parsed.with_host(address), options

    @asynccontextmanager
    async def open(self, url: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """A streaming GET that checks the URL and every redirect target."""
        for _ in range(_MAX_REDIRECTS + 1):
            target, options = self.target(url, await self.check(url))
            async with self.session.get(
                target, allow_redirects=False, timeout=self.timeout, **options
            ) as response:
                if response.status in _REDIRECTS and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                _raise_for_status(response, url)
                yield response
                return
        raise HandlerFailed(f"too many redirects fetching {url!r}", retryable=False)

    async def to_file(self, url: str, target: Path) -> Download:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with os.fdopen(handle, "wb") as file:
                download = await self._copy(url, file)
                file.flush()
                await asyncio.to_thread(os.fsync, file.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return download

    async def _copy(self, url: str, file: object) -> Download:
        digest = hashlib.sha256()
        size = 0
        try:
            async with self.open(url) as response:
                content_type = response.headers.get("content-type", "application/octet-stream")
                async for chunk in response.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise HandlerFailed(
                            f"{url!r} is larger than the download cap of {self.max_bytes} bytes",
                            retryable=False,
                        )
                    digest.update(chunk)
                    file.write(chunk)  # type: ignore[attr-defined]
        except http.FAILURES as exc:
            raise HandlerFailed(f"download of {url!r} failed: {http.describe(exc)}") from exc
        return Download(size=size, sha256=digest.hexdigest(), content_type=content_type)


def _raise_for_status(response: aiohttp.ClientResponse, url: str) -> None:
    code = response.status
    if code < 400:
        return
    retryable = code in (408, 425, 429) or code >= 500
    raise HandlerFailed(f"GET {url} answered {code}", retryable=retryable)
