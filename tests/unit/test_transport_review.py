"""Second reading of the lean PUT transport (`ingest.transport`): the cases its first tests
left out, each against a scripted loopback server that misbehaves as real ones do.

Every test waits for what it observes (a request read, a timer fired, a connection
lost), never for a delay; a wait that bounds a hang is a failure when it runs out.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
import yarl

from ingest.errors import Action, TransferError
from ingest.http import Timeouts, storage_session
from ingest.storage import put_file
from ingest.transport import BadAnswer, Pool, pool
from ingest.transport.connection import Connection
from tests.unit.test_transport import OK, SIGNED, Reader, Seen, Writer, pool_of, serve

pytestmark = pytest.mark.anyio

BOUND_S = 10.0  # what a hang is cut at (a failure); a passing test never waits for it


async def read_request(reader: Reader) -> bytes | None:
    """One request's head and body (its Content-Length), or None at the end."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return await reader.readexactly(length)


def image(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "a.png"
    path.write_bytes(os.urandom(size))
    return path


def new_pool(read_timeout: float = 60.0) -> Pool:
    return Pool(connect_timeout=5, read_timeout=read_timeout, limit=4, user_agent="t")


def observe(monkeypatch: pytest.MonkeyPatch, name: str) -> asyncio.Event:
    """An event set each time `Connection.<name>` runs (after it ran)."""
    seen = asyncio.Event()
    original = getattr(Connection, name)

    def wrapped(self: Connection, *args: object) -> object:
        result = original(self, *args)
        seen.set()
        return result

    monkeypatch.setattr(Connection, name, wrapped)
    return seen


async def test_an_early_refusal_then_a_close_is_read_and_triaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 refuses on the head (an expired URL) and closes without reading the body, which
    the kernel turns into a reset: the answer that came first is still the answer.

    The server closes once the client has received its answer (`data_received` ran):
    a reset that overtakes the answer before the client's loop reads it (a write of the
    body failing first) loses it in the event loop, which no client can read back; a
    CI run met that race once when the server closed at once.
    """
    path = image(tmp_path, 8 * 1024 * 1024)
    received = observe(monkeypatch, "data_received")
    xml = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message>"
    xml += b"<Expires>2020-01-01T00:00:00Z</Expires></Error>"

    async def refuse_and_close(reader: Reader, writer: Writer, _seen: Seen) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.read(1)  # some body has arrived, and is left unread
        writer.write(
            b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
            % (len(xml), xml)
        )
        await writer.drain()
        await asyncio.wait_for(received.wait(), BOUND_S)  # then the close, with body unread

    async with (
        serve(refuse_and_close, rcvbuf=64 * 1024) as (base, _seen),
        storage_session(Timeouts(read=BOUND_S), 2) as session,
    ):
        with pytest.raises(TransferError) as refused:
            await put_file(
                session, f"{base}/b/k{SIGNED}", path, path.stat().st_size, "image/png", provider="p"
            )
    assert refused.value.code == "expired" and refused.value.action is Action.RESIGN


async def test_a_header_block_without_end_is_refused_in_bounded_memory() -> None:
    """Headers that never end (here 256 KiB of them) are a bad answer once past the
    bound, as aiohttp's 8190-byte field and 128-header limits make them, not memory
    that grows while each byte re-arms the read timeout."""
    stop = asyncio.Event()

    async def endless_headers(reader: Reader, writer: Writer, _seen: Seen) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for n in range(4096):  # 256 KiB of headers, then silence
            writer.write(b"X-Filler-%05d: %s\r\n" % (n, b"y" * 48))
        await writer.drain()
        await stop.wait()

    pool = new_pool(read_timeout=BOUND_S)
    async with serve(endless_headers) as (base, _seen):
        try:
            with pytest.raises(BadAnswer, match="header"):
                await pool.put(yarl.URL(f"{base}/b/k"), {"Content-Length": "2"}, b"hi")
        finally:
            stop.set()
            pool.close()


async def test_a_put_cancelled_while_the_server_reads_nothing_drops_its_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled (drain, abort, a lost lease) while writing is paused: the socket goes at
    once, not after a flush of the queued body the server may never read (a kept fd)."""
    paused = observe(monkeypatch, "pause_writing")
    lost = observe(monkeypatch, "connection_lost")
    stop = asyncio.Event()

    async def read_nothing(reader: Reader, writer: Writer, _seen: Seen) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await stop.wait()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"z" * (256 * 1024)

    pool = new_pool()
    async with serve(read_nothing, rcvbuf=64 * 1024) as (base, _seen):
        url = yarl.URL(f"{base}/b/k")
        put = asyncio.ensure_future(pool.put(url, {"Content-Length": str(64 * 256 * 1024)}, body()))
        await asyncio.wait_for(paused.wait(), BOUND_S)
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await put
        try:
            await asyncio.wait_for(lost.wait(), BOUND_S)
        finally:
            stop.set()
            pool.close()


async def test_time_the_body_spends_on_its_source_is_not_a_read_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A body that waits on its own source between chunks (--max-mbps, a remote GET streamed
    in) longer than the read timeout is not a server that stalled: aiohttp starts sock_read
    only once the body is written; here the server's time still counts while it is behind."""
    fired = observe(monkeypatch, "_check_timeout")
    got: list[bytes] = []

    async def one_request(reader: Reader, writer: Writer, _seen: Seen) -> None:
        body = await read_request(reader)
        assert body is not None
        got.append(body)
        writer.write(OK)
        await writer.drain()

    async def slow_source() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        await asyncio.wait_for(fired.wait(), BOUND_S)  # the timer came due while we waited
        fired.clear()
        await asyncio.wait_for(fired.wait(), BOUND_S)  # and again
        yield b"b" * 1000

    pool = new_pool(read_timeout=0.05)
    async with serve(one_request) as (base, _seen):
        try:
            answer = await pool.put(
                yarl.URL(f"{base}/b/k"), {"Content-Length": "2000"}, slow_source()
            )
        finally:
            pool.close()
    assert answer.status == 200 and got == [b"a" * 1000 + b"b" * 1000]


async def test_an_idle_connection_past_the_keepalive_time_is_not_reused() -> None:
    """Idle connections are dropped after `idle_s` (aiohttp's keepalive_timeout, 15 s), before
    a server's or a middlebox's idle timeout can race the next PUT (a reset, not a retry)."""
    accepted = 0

    async def keep_alive(reader: Reader, writer: Writer, _seen: Seen) -> None:
        nonlocal accepted
        accepted += 1
        while await read_request(reader) is not None:
            writer.write(OK)
            await writer.drain()

    pool = new_pool()
    assert pool.idle_s == 15.0
    async with serve(keep_alive) as (base, _seen):
        url = yarl.URL(f"{base}/b/k")
        try:
            await pool.put(url, {"Content-Length": "2"}, b"hi")
            await pool.put(url, {"Content-Length": "2"}, b"hi")
            assert pool.opened == 1
            pool.idle_s = 0.0
            await pool.put(url, {"Content-Length": "2"}, b"hi")
            assert pool.opened == 2 and pool.idle_count() == 1
        finally:
            pool.close()
    assert accepted == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nX-Amz-Id-2: a\r\n b\r\nContent-Length: 0\r\n\r\n",  # obs-fold
        b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",  # bare LF
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nok\r\n0\r\n\r\n",
    ],
    ids=["folded-header", "bare-lf", "space-after-chunk-size"],
)
async def test_answers_aiohttp_reads_leniently_land(tmp_path: Path, answer: bytes) -> None:
    """RFC 9112 5.2 (a user agent unfolds obs-fold), 2.2 (a bare LF may end a line): read
    as aiohttp reads answers, not refused as malformed (every PUT failed, retried)."""
    path = image(tmp_path, 100)

    async def odd(reader: Reader, writer: Writer, _seen: Seen) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()

    async with serve(odd) as (base, _seen), storage_session(Timeouts(read=BOUND_S), 2) as session:
        await put_file(session, f"{base}/b/k{SIGNED}", path, 100, "image/png", provider="p")


async def test_a_success_whose_body_never_ends_is_the_success_not_a_hang(tmp_path: Path) -> None:
    """A 200 whose chunked body runs on and on: its status is the answer once BODY_CAP bytes
    came (storage reads no body of a success), and the connection is not reused; each
    chunk re-armed the read timeout, so the PUT never ended."""
    path = image(tmp_path, 100)
    stop = asyncio.Event()

    async def endless_body(reader: Reader, writer: Writer, _seen: Seen) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while not stop.is_set():
            writer.write(b"4000\r\n" + b"w" * 0x4000 + b"\r\n")
            await writer.drain()

    async with (
        serve(endless_body) as (base, _seen),
        storage_session(Timeouts(read=BOUND_S), 2) as session,
    ):
        try:
            await asyncio.wait_for(
                put_file(session, f"{base}/b/k{SIGNED}", path, 100, "image/png", provider="p"),
                BOUND_S,
            )
        finally:
            stop.set()
        assert pool_of(session).idle_count() == 0


@pytest.mark.parametrize(
    "anyio_backend", [("asyncio", {"use_uvloop": False}), ("asyncio", {"use_uvloop": True})]
)
async def test_a_tls_answer_read_to_a_close_without_close_notify_is_the_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 200 whose body runs to the close, the TLS connection dropped without close_notify:
    uvloop (the run's loop) reports only connection_lost, and the answer was lost."""
    ca = trustme.CA()
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(served)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    monkeypatch.setattr(pool, "_ssl_context", trusting)

    async def answer_and_drop(reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nstored")
        await writer.drain()
        writer.transport.abort()  # no close_notify

    server = await asyncio.start_server(answer_and_drop, "127.0.0.1", 0, ssl=served)
    url = yarl.URL(f"https://localhost:{server.sockets[0].getsockname()[1]}/b/k")
    lean = new_pool(read_timeout=BOUND_S)
    try:
        answer = await lean.put(url, {"Content-Length": "2"}, b"hi")
    finally:
        lean.close()
        server.close()
        await server.wait_closed()
    assert answer.status == 200 and answer.body == b"stored"


async def test_a_close_mid_answer_is_not_called_a_close_before_answering(tmp_path: Path) -> None:
    """A 200 whose body stops at 3 of its 100 bytes, then a FIN: the server did answer,
    so the failure says it closed mid-answer (it said 'before answering')."""
    path = image(tmp_path, 100)

    async def cut_answer(reader: Reader, writer: Writer, _seen: Seen) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        await writer.drain()

    async with (
        serve(cut_answer) as (base, _seen),
        storage_session(Timeouts(read=BOUND_S), 2) as session,
    ):
        with pytest.raises(TransferError) as cut:
            await put_file(session, f"{base}/b/k{SIGNED}", path, 100, "image/png", provider="p")
    assert "closed the connection mid-answer" in str(cut.value)
    assert cut.value.action is Action.RETRY
