"""The upstream client's failure classes, against real sockets on 127.0.0.1: whether a failed
create may be resent depends on whether its request can have reached the server."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from service.errors import UpstreamAmbiguous, UpstreamUnavailable
from service.http import new_session
from service.upstream import UpstreamClient
from tests.support import free_port


def create(base_url: str, timeout: float = 5.0) -> None:
    async def main() -> None:
        async with new_session() as session:
            client = UpstreamClient(base_url, "key", session, timeout=timeout)
            await client.create("google/nano-banana", {"prompt": "x"}, callback_url="http://x/")

    asyncio.run(main())


@contextmanager
def hanging_up_server() -> Iterator[tuple[str, list[bytes]]]:
    """Accepts connections, reads the request, then closes without answering."""
    received: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                received.append(conn.recv(65536))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", received
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_refused_connection_is_unavailable_and_may_be_resent():
    with pytest.raises(UpstreamUnavailable) as failed:
        create(f"http://127.0.0.1:{free_port()}")
    assert "cannot reach the upstream" in failed.value.message


def test_a_create_cut_off_after_sending_is_ambiguous():
    with hanging_up_server() as (url, received), pytest.raises(UpstreamAmbiguous) as failed:
        create(url)
    assert "was sent but failed before an answer" in failed.value.message
    assert received and received[0].startswith(b"POST /v1/tasks HTTP/1.1")


def test_an_invalid_base_url_is_not_sent():
    with pytest.raises(UpstreamUnavailable):
        create("ftp://127.0.0.1:1")
