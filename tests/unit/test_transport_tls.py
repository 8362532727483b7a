"""The lean transport over TLS: SNI and verification with the default context, against a
loopback server whose certificate a throwaway CA (trustme) signed."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trustme

from ingest.errors import Action, TransferError
from ingest.http import Timeouts, storage_session
from ingest.storage import put_file
from ingest.transport import pool

pytestmark = pytest.mark.anyio

SIGNED = "?X-Amz-Signature=0123456789abcdef0123456789abcdef"


@asynccontextmanager
async def tls_server(ca: trustme.CA) -> AsyncIterator[tuple[int, list[str | None], list[int]]]:
    """A TLS server for ``localhost`` on a free port: yields it, the SNI names it was sent,
    and the body sizes it received."""
    names: list[str | None] = []
    bodies: list[int] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)

    def sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = sni

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                bodies.append(len(await reader.readexactly(length)))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1], names, bodies
    finally:
        server.close()
        await server.wait_closed()


async def test_an_https_put_verifies_the_host_and_sends_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    monkeypatch.setattr(pool, "_ssl_context", trusting)  # the default context, plus this CA
    path = tmp_path / "a.png"
    path.write_bytes(os.urandom(300_000))
    async with tls_server(ca) as (port, names, bodies), storage_session(Timeouts(), 2) as s:
        for key in ("a", "b"):
            url = f"https://localhost:{port}/b/{key}.png{SIGNED}"
            await put_file(s, url, path, 300_000, "image/png", provider="p")
    assert names == ["localhost"]  # one handshake: the second PUT reused the connection
    assert bodies == [300_000, 300_000]


async def test_a_certificate_that_does_not_verify_is_a_retryable_network_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "_ssl_context", None)  # the real default: this CA is unknown
    path = tmp_path / "a.png"
    path.write_bytes(b"x" * 100)
    async with (
        tls_server(trustme.CA()) as (port, _names, bodies),
        storage_session(Timeouts(), 2) as s,
    ):
        with pytest.raises(TransferError) as refused:
            await put_file(
                s, f"https://localhost:{port}/b/k{SIGNED}", path, 100, "image/png", provider="p"
            )
    assert refused.value.code == "network" and refused.value.action is Action.RETRY
    assert "certificate" in refused.value.message.lower()
    assert "0123456789abcdef" not in str(refused.value)
    assert bodies == []
