"""A source whose connection closes before its Content-Length (or its last chunk) fails with
the README's `source body cut short: N of M bytes`, not aiohttp's ClientPayloadError text
(newcomer16: `cannot fetch the source (ClientPayloadError: … <ContentLengthError: 400, …>)`)."""

from __future__ import annotations

import asyncio

import pytest

import ingest
from ingest.errors import Action
from ingest.retry import RetryPolicy
from tests.images import image_bytes
from tests.unit.test_remote import fetch_error

PNG = image_bytes("png", 5_000, 1)
TWICE = RetryPolicy(2, window_s=0, base_s=0, cap_s=0, max_resigns=0, max_wait_s=0)


async def _fetch_from(answer: bytes) -> tuple[ingest.TransferError, str]:
    """The error of fetching from a server that sends `answer`, then closes (two tries)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    async def sleep(seconds: float) -> None:
        pass

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/x.png"
    try:
        return await fetch_error(url, TWICE, sleep), url
    finally:
        server.close()


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n\r\n"
            + PNG[:60],
            "source body cut short: 60 of 5000 bytes (after 2 tries)",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n" + PNG[:60],
            "source body cut short: the connection closed before its last chunk (after 2 tries)",
        ),
    ],
    ids=["content-length", "chunked"],
)
def test_a_body_cut_short_by_its_connection_is_said_so(answer: bytes, said: str) -> None:
    err, url = asyncio.run(_fetch_from(answer))
    assert err.action is Action.FAIL_ITEM and err.message == f"{said}: {url}"
