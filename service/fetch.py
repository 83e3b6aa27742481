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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import msgspec

from handlers import HandlerFailed

_MAX_REDIRECTS = 5
_CHUNK = 1024 * 1024


class Download(msgspec.Struct):
    size: int
    sha256: str
    content_type: str


def _forbidden(address: str) -> bool:
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
    def __init__(
        self, http: httpx.AsyncClient, *, allow_private: bool, max_bytes: int, timeout: float = 60.0
    ) -> None:
        self.http = http
        self.allow_private = allow_private
        self.max_bytes = max_bytes
        self.timeout = timeout

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
        if any(_forbidden(info[4][0]) for info in infos):
            raise HandlerFailed(
                f"refused to fetch {url!r}: {parts.hostname} resolves to a private or local "
                "address (set security.allow_private_networks to allow it)",
                retryable=False,
            )
        return str(infos[0][4][0])

    def _request(self, url: str, address: str | None) -> httpx.Request:
        """A GET that connects to the address that was checked, not to a second DNS answer
        (which could point somewhere else: DNS rebinding). Host and TLS name stay the URL's."""
        if address is None:
            return self.http.build_request("GET", url, timeout=self.timeout)
        parsed = httpx.URL(url)
        extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
        return self.http.build_request(
            "GET",
            parsed.copy_with(host=address),
            headers={"Host": parsed.netloc.decode("ascii")},
            timeout=self.timeout,
            extensions=extensions,
        )

    @asynccontextmanager
    async def open(self, url: str) -> AsyncIterator[httpx.Response]:
        """A streaming GET that checks the URL and every redirect target."""
        for _ in range(_MAX_REDIRECTS + 1):
            request = self._request(url, await self.check(url))
            response = await self.http.send(request, stream=True)
            if response.is_redirect and "location" in response.headers:
                url = urljoin(url, response.headers["location"])
                await response.aclose()
                continue
            try:
                _raise_for_status(response, url)
                yield response
            finally:
                await response.aclose()
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
                async for chunk in response.aiter_bytes(_CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise HandlerFailed(
                            f"{url!r} is larger than the download cap of {self.max_bytes} bytes",
                            retryable=False,
                        )
                    digest.update(chunk)
                    file.write(chunk)  # type: ignore[attr-defined]
        except httpx.HTTPError as exc:
            raise HandlerFailed(f"download of {url!r} failed: {exc!r}") from exc
        return Download(size=size, sha256=digest.hexdigest(), content_type=content_type)


def _raise_for_status(response: httpx.Response, url: str) -> None:
    code = response.status_code
    if code < 400:
        return
    retryable = code in (408, 425, 429) or code >= 500
    raise HandlerFailed(f"GET {url} answered {code}", retryable=retryable)
