"""aiohttp's hidden re-send of an idempotent request, and the private switch that turns it off.

`ingest.http._no_hidden_retries` sets `ClientSession._retry_connection`, an
attribute aiohttp does not document (its own test client sets it). The
dependency pin keeps aiohttp below 4; these tests fail if a 3.x release
renames the attribute or it stops doing what the engine relies on: one
PUT at the server per attempt the engine counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from ingest.http import Timeouts, _no_hidden_retries, storage_session
from ingest.transport.session import Session

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def hang_up_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server that reads each request whole, then closes the connection without an answer.

    Yields its URL and the request lines it received, one per request.
    """
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        received.append(head.split(b"\r\n", 1)[0])
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                await reader.readexactly(int(value))
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/bucket/key", received
    finally:
        server.close()
        await server.wait_closed()


async def put_once(session: aiohttp.ClientSession | Session, url: str) -> None:
    async with session:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await session.put(url, data=b"x" * 1000)


async def test_the_switch_exists_and_is_on_by_default() -> None:
    async with aiohttp.ClientSession() as session:
        assert session._retry_connection is True
        assert _no_hidden_retries(session)._retry_connection is False


async def test_a_stock_session_sends_a_dropped_put_twice() -> None:
    """The control: without the switch aiohttp re-sends the PUT by itself.

    If this fails, aiohttp no longer retries in hiding and the switch (and
    this file) can go.
    """
    async with hang_up_server() as (url, received):
        await put_once(aiohttp.ClientSession(), url)
    assert received == [b"PUT /bucket/key HTTP/1.1"] * 2


async def test_the_storage_session_sends_a_dropped_put_once() -> None:
    async with hang_up_server() as (url, received):
        await put_once(storage_session(Timeouts(connect=5, read=5), limit=1), url)
    assert received == [b"PUT /bucket/key HTTP/1.1"]
