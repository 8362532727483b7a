"""The lean PUT transport (`ingest.transport`) through `storage.put_file`, against
loopback servers that misbehave the ways real ones do.

Each server is a scripted asyncio handler on a free port; each test waits
for what it observes (requests received, connections opened), never a delay.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yarl

from ingest.errors import UNREACHABLE, Action, TransferError
from ingest.http import Timeouts, storage_session
from ingest.storage import put_file
from ingest.transport import Pool
from ingest.transport.session import Session

pytestmark = pytest.mark.anyio

SIGNED = "?X-Amz-Signature=0123456789abcdef0123456789abcdef"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@dataclass
class Request:
    line: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Seen:
    requests: list[Request] = field(default_factory=list)
    connections: int = 0


Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
Handler = Callable[[Reader, Writer, Seen], Awaitable[None]]


async def read_head(reader: Reader) -> tuple[str, dict[str, str]] | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    line, *rest = raw.decode("latin-1").split("\r\n")
    headers = {}
    for item in rest:
        if item:
            name, _, value = item.partition(":")
            headers[name.strip().lower()] = value.strip()
    return line, headers


async def read_request(reader: Reader, seen: Seen) -> Request | None:
    head = await read_head(reader)
    if head is None:
        return None
    line, headers = head
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    request = Request(line, headers, body)
    seen.requests.append(request)
    return request


async def keep_alive(reader: Reader, writer: Writer, seen: Seen) -> None:
    """A well-behaved server: 200 to every request, on one connection."""
    while await read_request(reader, seen) is not None:
        writer.write(OK)
        await writer.drain()


@asynccontextmanager
async def serve(handler: Handler, rcvbuf: int = 0) -> AsyncIterator[tuple[str, Seen]]:
    """A server on a free loopback port; `rcvbuf` shrinks its receive buffer (and window)."""
    seen = Seen()

    async def on_connect(reader: Reader, writer: Writer) -> None:
        seen.connections += 1
        try:
            await handler(reader, writer, seen)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before listen: inherited
    sock.bind(("127.0.0.1", 0))
    server = await asyncio.start_server(on_connect, sock=sock)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.close()
        await server.wait_closed()


def image(tmp_path: Path, size: int, name: str = "a.png") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def pool_of(session: Session) -> Pool:
    pool = session.lean
    assert isinstance(pool, Pool)
    return pool


async def put(session: Session, url: str, path: Path, content_type: str = "image/png") -> None:
    await put_file(session, url, path, os.stat(path).st_size, content_type, provider="p")


async def test_puts_share_one_kept_alive_connection_with_exact_bodies(tmp_path: Path) -> None:
    small, large = image(tmp_path, 5000), image(tmp_path, 3 * 1024 * 1024 + 7, "big.png")
    async with serve(keep_alive) as (base, seen), storage_session(Timeouts(), 4) as session:
        for path in (small, large, small):
            await put(session, f"{base}/b/{path.name}{SIGNED}", path)
        assert pool_of(session).opened == 1
    assert seen.connections == 1
    assert [r.line for r in seen.requests] == [
        f"PUT /b/{name}{SIGNED} HTTP/1.1" for name in ("a.png", "big.png", "a.png")
    ]
    for request, path in zip(seen.requests, (small, large, small), strict=True):
        assert hashlib.sha256(request.body).digest() == hashlib.sha256(path.read_bytes()).digest()
        assert request.headers["content-length"] == str(path.stat().st_size)
        assert request.headers["content-type"] == "image/png"
        assert request.headers["host"] == base.removeprefix("http://")
        assert "transfer-encoding" not in request.headers and "expect" not in request.headers
        assert set(request.headers) == {"host", "user-agent", "content-type", "content-length"}


async def test_an_idle_connection_the_server_closed_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest.transport.connection import Connection

    path = image(tmp_path, 1000)
    closed = asyncio.Event()
    eof = Connection.eof_received

    def observed(self: Connection) -> bool | None:
        closed.set()
        return eof(self)

    monkeypatch.setattr(Connection, "eof_received", observed)

    async def one_then_close(reader: Reader, writer: Writer, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.write(OK)  # keep-alive by its framing, then closed at once
        await writer.drain()

    async with serve(one_then_close) as (base, seen), storage_session(Timeouts(), 4) as session:
        await put(session, f"{base}/b/1{SIGNED}", path)
        await closed.wait()  # the server's FIN, read while the connection sat idle
        await put(session, f"{base}/b/2{SIGNED}", path)
    assert seen.connections == 2 and len(seen.requests) == 2


async def test_a_kept_alive_connection_closed_before_answering_is_retried_once_fresh(
    tmp_path: Path,
) -> None:
    """The server closes (a FIN, as at its idle timeout) with the second request unanswered:
    sent again at once on a new connection, and it lands; the engine sees one success."""
    path = image(tmp_path, 1000)

    async def answer_first_only(reader: Reader, writer: Writer, seen: Seen) -> None:
        if seen.connections == 1:
            await read_request(reader, seen)
            writer.write(OK)
            await writer.drain()
            await read_request(reader, seen)  # read whole (so the close is a FIN), unanswered
            return
        await keep_alive(reader, writer, seen)

    async with (
        serve(answer_first_only) as (base, seen),
        storage_session(Timeouts(), 4) as session,
    ):
        await put(session, f"{base}/b/1{SIGNED}", path)
        await put(session, f"{base}/b/2{SIGNED}", path)
    assert seen.connections == 2
    assert [r.line.split()[1] for r in seen.requests] == [
        f"/b/1{SIGNED}",
        f"/b/2{SIGNED}",
        f"/b/2{SIGNED}",
    ]


async def test_a_reset_mid_body_is_one_retryable_failure_not_a_hidden_resend(
    tmp_path: Path,
) -> None:
    path = image(tmp_path, 2 * 1024 * 1024)

    async def reset_second(reader: Reader, writer: Writer, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.write(OK)
        await writer.drain()
        await read_head(reader)
        await reader.read(1000)
        seen.requests.append(Request("cut", {}, b""))
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()

    async with serve(reset_second) as (base, seen), storage_session(Timeouts(), 4) as session:
        await put(session, f"{base}/b/1{SIGNED}", path)
        with pytest.raises(TransferError) as cut:
            await put(session, f"{base}/b/2{SIGNED}", path)
    assert cut.value.code == "network" and cut.value.action is Action.RETRY
    assert "X-Amz-Signature" not in str(cut.value) and "0123456789abcdef" not in str(cut.value)
    assert seen.connections == 1  # no second try behind the engine's back


async def test_a_chunked_error_answer_is_read_and_triaged(tmp_path: Path) -> None:
    path = image(tmp_path, 1000)
    xml = b"<Error><Code>SignatureDoesNotMatch</Code><Message>nope</Message></Error>"

    async def chunked(reader: Reader, writer: Writer, seen: Seen) -> None:
        await read_request(reader, seen)
        half = len(xml) // 2
        writer.write(
            b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, xml[:half], len(xml) - half, xml[half:])
        )
        await writer.drain()
        await reader.read()

    async with serve(chunked) as (base, _seen), storage_session(Timeouts(), 4) as session:
        with pytest.raises(TransferError) as refused:
            await put(session, f"{base}/b/1{SIGNED}", path)
    assert refused.value.code == "SignatureDoesNotMatch" and refused.value.status == 403
    assert refused.value.action is Action.RESIGN


async def test_an_answer_before_the_body_is_read_is_the_answer(tmp_path: Path) -> None:
    """A server that refuses on the head alone (S3's expired URL) and stops reading: the
    client stops sending and triages the answer, instead of a write error."""
    path = image(tmp_path, 8 * 1024 * 1024)
    xml = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message>"
    xml += b"<Expires>2020-01-01T00:00:00Z</Expires></Error>"

    drained = 0

    async def refuse_early(reader: Reader, writer: Writer, seen: Seen) -> None:
        nonlocal drained
        await read_head(reader)
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s" % (len(xml), xml))
        await writer.drain()
        while part := await reader.read(64 * 1024):  # reads on, as S3 drains a refused body
            drained += len(part)

    async with (
        serve(refuse_early, rcvbuf=64 * 1024) as (base, _seen),
        storage_session(Timeouts(), 4) as session,
    ):
        with pytest.raises(TransferError) as refused:
            await put(session, f"{base}/b/1{SIGNED}", path)
    assert refused.value.code == "expired" and refused.value.action is Action.RESIGN
    assert drained < path.stat().st_size  # the client stopped sending once it had the answer


async def test_a_server_slow_to_answer_times_out(tmp_path: Path) -> None:
    path = image(tmp_path, 1000)
    done = asyncio.Event()

    async def never_answer(reader: Reader, writer: Writer, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 200 OK\r\n")  # a status line, then nothing
        await done.wait()

    async with (
        serve(never_answer) as (base, _seen),
        storage_session(Timeouts(read=0.2), 4) as session,
    ):
        with pytest.raises(TransferError) as slow:
            await put(session, f"{base}/b/1{SIGNED}", path)
        done.set()
    assert slow.value.code == "timeout" and slow.value.action is Action.RETRY


async def test_interim_answers_and_a_body_read_to_the_close_are_understood(
    tmp_path: Path,
) -> None:
    """An unasked 100 Continue before the 200 (the client sends no Expect and never waits
    for one); a 200 with no length whose body runs to the close: both land."""
    path = image(tmp_path, 1000)

    async def odd(reader: Reader, writer: Writer, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nstored")
        await writer.drain()

    async with serve(odd) as (base, seen), storage_session(Timeouts(), 4) as session:
        await put(session, f"{base}/b/1{SIGNED}", path)
        await put(session, f"{base}/b/2{SIGNED}", path)
        await put(session, f"{base}/b/3{SIGNED}", path)  # the closed connection is not reused
    assert seen.connections == 2 and len(seen.requests) == 3
    assert all("expect" not in r.headers for r in seen.requests)


async def test_an_error_body_is_read_up_to_64_kib(tmp_path: Path) -> None:
    path = image(tmp_path, 1000)
    filler = b"x" * (200 * 1024)

    async def huge_error(reader: Reader, writer: Writer, seen: Seen) -> None:
        await read_request(reader, seen)
        body = b"<Error><Code>InternalError</Code><Message>" + filler + b"</Message></Error>"
        writer.write(b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    async with serve(huge_error) as (base, _seen), storage_session(Timeouts(), 4) as session:
        with pytest.raises(TransferError) as failed:
            await put(session, f"{base}/b/1{SIGNED}", path)
    assert failed.value.code == "InternalError" and failed.value.action is Action.RETRY
    assert failed.value.status == 500


async def test_a_refused_connection_is_unreachable_and_names_only_the_origin(
    tmp_path: Path,
) -> None:
    path = image(tmp_path, 500)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with storage_session(Timeouts(connect=5), 2) as session:
        with pytest.raises(TransferError) as refused:
            await put(session, f"http://127.0.0.1:{port}/b/k{SIGNED}", path)
    assert refused.value.code == UNREACHABLE and refused.value.action is Action.RETRY
    assert refused.value.message == f"cannot reach http://127.0.0.1:{port}: connection refused"


async def test_a_header_with_a_line_break_is_refused_before_sending(tmp_path: Path) -> None:
    path = image(tmp_path, 500)
    async with serve(keep_alive) as (base, seen), storage_session(Timeouts(), 2) as session:
        with pytest.raises(TransferError) as refused:
            await put(session, f"{base}/b/k{SIGNED}", path, "image/png\r\nX-Evil: 1")
    assert refused.value.code == "bad_request" and refused.value.action is Action.FAIL_ITEM
    assert seen.connections == 0


async def test_a_proxy_in_the_environment_sends_by_aiohttp_unless_no_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = image(tmp_path, 500)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    async with serve(keep_alive) as (base, seen):
        async with storage_session(Timeouts(), 2) as session:
            await put(session, f"{base}/b/1{SIGNED}", path)  # aiohttp, which reads no proxy
            assert pool_of(session).opened == 0
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with storage_session(Timeouts(), 2) as session:
            await put(session, f"{base}/b/2{SIGNED}", path)
            assert pool_of(session).opened == 1
    assert len(seen.requests) == 2


async def test_put_transport_aiohttp_has_no_lean_pool(tmp_path: Path) -> None:
    path = image(tmp_path, 500)
    async with (
        serve(keep_alive) as (base, seen),
        storage_session(Timeouts(), 2, "aiohttp") as session,
    ):
        assert session.lean is None
        await put(session, f"{base}/b/1{SIGNED}", path)
    assert seen.requests[0].headers["accept-encoding"]  # aiohttp's own header: it sent it


async def test_a_large_body_waits_for_the_socket_and_lands_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streamed in chunks with the transport's write flow control: writing pauses while
    the server is behind (observed), and every byte arrives in order."""
    from ingest.transport.connection import Connection

    path = image(tmp_path, 6 * 1024 * 1024 + 3, "big.png")  # beyond the socket buffers (4 MiB)
    paused = asyncio.Event()
    pause = Connection.pause_writing

    def observed(self: Connection) -> None:
        paused.set()
        pause(self)

    monkeypatch.setattr(Connection, "pause_writing", observed)

    async def slow_reader(reader: Reader, writer: Writer, seen: Seen) -> None:
        head = await read_head(reader)
        assert head is not None
        await paused.wait()  # reads nothing more until the client has had to wait
        left, parts = int(head[1]["content-length"]), []
        while left:
            part = await reader.read(min(left, 16 * 1024))
            left -= len(part)
            parts.append(part)
        seen.requests.append(Request(head[0], head[1], b"".join(parts)))
        writer.write(OK)
        await writer.drain()

    async with (
        serve(slow_reader, rcvbuf=64 * 1024) as (base, seen),
        storage_session(Timeouts(), 2) as session,
    ):
        await put(session, f"{base}/b/big{SIGNED}", path)
    assert paused.is_set()
    assert (
        hashlib.sha256(seen.requests[0].body).digest() == hashlib.sha256(path.read_bytes()).digest()
    )


async def test_closing_the_session_ends_a_put_in_flight_without_a_second_try(
    tmp_path: Path,
) -> None:
    path = image(tmp_path, 1000)
    arrived = asyncio.Event()
    done = asyncio.Event()

    async def keep_one_unanswered(reader: Reader, writer: Writer, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.write(OK)
        await writer.drain()
        await read_request(reader, seen)
        arrived.set()
        await done.wait()

    async with serve(keep_one_unanswered) as (base, seen):
        session = storage_session(Timeouts(), 2)
        await put(session, f"{base}/b/1{SIGNED}", path)
        in_flight = asyncio.ensure_future(put(session, f"{base}/b/2{SIGNED}", path))
        await arrived.wait()
        await session.close()
        with pytest.raises(TransferError) as ended:
            await in_flight
        done.set()
    assert ended.value.code == "network"
    assert seen.connections == 1 and len(seen.requests) == 2


def heads_sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A list that gets "sent" each time a request's head is written (`Connection.send_head`),
    for tests that order it against other callbacks of the loop."""
    from ingest.transport.connection import Connection

    order: list[str] = []
    send_head = Connection.send_head

    def observed(
        self: Connection, head: bytes, body: bytes = b"", deadline: float | None = None
    ) -> None:
        order.append("sent")
        send_head(self, head, body, deadline)

    monkeypatch.setattr(Connection, "send_head", observed)
    return order


async def test_a_put_leaves_after_the_callbacks_of_the_turn_that_asked_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal writes an item's `acq` with a `call_soon` at the end of the turn; a read-
    ahead body on a warm connection must not reach the server before it (a SIGKILL between
    them left an upload landed twice with no record of it in flight)."""
    path = image(tmp_path, 1000)
    order = heads_sent(monkeypatch)
    async with serve(keep_alive) as (base, _seen), storage_session(Timeouts(), 2) as session:
        await put(session, f"{base}/b/warm{SIGNED}", path)  # a kept-alive connection now
        order.clear()
        asyncio.get_running_loop().call_soon(order.append, "journaled")
        await put_file(
            session, f"{base}/b/1{SIGNED}", path, 1000, "image/png", provider="p", body=b"x" * 1000
        )
    assert order == ["journaled", "sent"]


async def test_a_connect_that_never_completes_fails_at_the_connect_timeout_and_a_cancel_goes_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ingest.transport.pool import ConnectFailed

    never = asyncio.Event()

    async def hang(self: Pool, host: str, port: int, tls: object) -> object:
        await never.wait()  # a host that drops SYNs: nothing ever answers
        raise AssertionError("unreachable")

    monkeypatch.setattr(Pool, "_open_one", hang)
    pool = Pool(connect_timeout=0.05, read_timeout=5.0, limit=2, user_agent="t")
    url = yarl.URL("http://192.0.2.1:9/x")
    with pytest.raises(ConnectFailed, match="timed out"):
        await pool.put(url, {"Content-Type": "image/png", "Content-Length": "1"}, b"x")
    # A cancellation during the connect is the caller's, never swallowed.
    task = asyncio.ensure_future(
        Pool(connect_timeout=60.0, read_timeout=5.0, limit=2, user_agent="t").put(
            url, {"Content-Type": "image/png", "Content-Length": "1"}, b"x"
        )
    )
    await asyncio.sleep(0)  # let it reach the connect
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
