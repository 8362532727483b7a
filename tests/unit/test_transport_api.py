"""Provider API calls (`ingest.http.request`) on the lean transport, observed at loopback
servers: the headers on the wire, the answer read whole under a cap, the timeouts, the
one re-send (never of a POST), the errors and their redaction, TLS.

Each server is a scripted asyncio handler on a free port (`tests.unit.test_transport`);
each test waits for what it observes, never a delay.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trustme

from ingest.errors import UNREACHABLE, Action, TransferError
from ingest.http import USER_AGENT, Timeouts, api_session, request, storage_session
from ingest.transport import Pool, pool
from ingest.transport.response import API_BODY_CAP
from ingest.transport.session import Session
from tests.unit.test_transport import (
    OK,
    Reader,
    Seen,
    Writer,
    heads_sent,
    keep_alive,
    read_request,
    serve,
)
from tests.unit.test_transport_tls import tls_server

pytestmark = pytest.mark.anyio

KEY = "sk-live-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}", "X-Provider": "p1"}


def lean_of(session: Session) -> Pool:
    lean = session.lean
    assert isinstance(lean, Pool)
    return lean


@asynccontextmanager
async def api(base: str, timeouts: Timeouts | None = None) -> AsyncIterator[Session]:
    async with api_session(base + "/", AUTH, timeouts or Timeouts(), 4) as session:
        yield session


async def answer_with(reader: Reader, writer: Writer, seen: Seen, raw: bytes) -> None:
    while await read_request(reader, seen) is not None:
        writer.write(raw)
        await writer.drain()


async def test_calls_carry_the_sessions_headers_on_one_kept_alive_connection() -> None:
    """The credentials, User-Agent and per-provider headers go out as aiohttp sent them,
    on every call, refusals included, over one connection; the storage pool is another
    pool and never carries them."""
    answers = iter([b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}", OK, OK])

    async def scripted(reader: Reader, writer: Writer, seen: Seen) -> None:
        while await read_request(reader, seen) is not None:
            writer.write(next(answers))
            await writer.drain()

    async with serve(scripted) as (base, seen), api(base) as session:
        lean = lean_of(session)
        gone = await request(session, "GET", "v1/assets/a", provider="p", op="acquire")
        extra = {"X-Version": "2"}
        made = await request(
            session, "POST", "v1/assets", provider="p", op="acquire", json={"n": 1}, headers=extra
        )
        deleted = await request(session, "DELETE", "v1/assets/a", provider="p", op="tidy")
        async with storage_session(Timeouts(), 2) as storage:
            assert lean_of(storage) is not lean_of(session)
    assert (gone.status, made.status, deleted.status) == (404, 200, 200)
    assert seen.connections == 1 and lean.opened == 1
    get, post, delete = seen.requests
    assert [r.line for r in seen.requests] == [
        "GET /v1/assets/a HTTP/1.1",
        "POST /v1/assets HTTP/1.1",
        "DELETE /v1/assets/a HTTP/1.1",
    ]
    for sent in seen.requests:
        assert sent.headers["authorization"] == f"Bearer {KEY}"
        assert sent.headers["user-agent"] == USER_AGENT
        assert sent.headers["x-provider"] == "p1"
        assert sent.headers["accept"] == "*/*"
        assert sent.headers["host"] == base.removeprefix("http://")
    assert "content-length" not in get.headers and delete.headers["content-length"] == "0"
    assert post.headers["content-type"] == "application/json"
    assert post.headers["x-version"] == "2" and post.body == b'{"n":1}'
    assert post.headers["content-length"] == "7"


async def test_a_calls_header_replaces_the_sessions_of_the_same_name() -> None:
    async with serve(keep_alive) as (base, seen), api(base) as session:
        await request(
            session, "GET", "x", provider="p", op="acquire", headers={"x-provider": "other"}
        )
    [sent] = seen.requests
    assert sent.headers["x-provider"] == "other" and sent.headers["authorization"]
    assert list(sent.headers).count("x-provider") == 1


async def test_answer_headers_are_case_insensitive_and_a_chunked_body_is_read_whole() -> None:
    body = b'{"id": "a1", "url": "http://x/y"}'
    raw = (
        b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 3\r\nDATE: Tue, 01 Dec 2026 16:00:00 GMT"
        b"\r\nX-Should-Retry: true\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:5], body[5:]))
        + b"0\r\n\r\n"
    )

    async def handler(reader: Reader, writer: Writer, seen: Seen) -> None:
        await answer_with(reader, writer, seen, raw)

    async with serve(handler) as (base, _seen), api(base) as session:
        answer = await request(session, "POST", "v3/x", provider="p", op="acquire", json={})
    assert answer.status == 429 and answer.json() == {"id": "a1", "url": "http://x/y"}
    assert answer.headers["Retry-After"] == "3" and answer.headers["x-should-retry"] == "true"
    assert answer.headers.get("Date") == "Tue, 01 Dec 2026 16:00:00 GMT"


async def test_a_gzip_answer_is_decoded_and_a_redirect_is_not_followed() -> None:
    packed = gzip.compress(b'{"ok": true}')
    answers = iter(
        [
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
            % (len(packed), packed),
            b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
        ]
    )

    async def scripted(reader: Reader, writer: Writer, seen: Seen) -> None:
        while await read_request(reader, seen) is not None:
            writer.write(next(answers))
            await writer.drain()

    async with serve(scripted) as (base, seen), api(base) as session:
        packed_answer = await request(session, "GET", "a", provider="p", op="acquire")
        moved = await request(session, "GET", "b", provider="p", op="acquire")
    assert packed_answer.json() == {"ok": True}
    assert seen.requests[0].headers["accept-encoding"] == "gzip, deflate"
    assert moved.status == 302 and len(seen.requests) == 2  # /elsewhere never asked


@pytest.mark.parametrize("framing", ["length", "endless"])
async def test_an_oversized_or_endless_body_is_a_retryable_bad_response(framing: str) -> None:
    """Past API_BODY_CAP the call ends (memory stays bounded) and the engine retries it."""
    stop = asyncio.Event()

    async def big(reader: Reader, writer: Writer, seen: Seen) -> None:
        await read_request(reader, seen)
        if framing == "length":
            size = API_BODY_CAP + 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
        else:  # a chunked body that never ends
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
            while not stop.is_set():
                writer.write(chunk)
                await writer.drain()
        await writer.drain()
        await reader.read()

    async with serve(big) as (base, _seen), api(base) as session:
        with pytest.raises(TransferError) as cut:
            await request(session, "GET", "list", provider="p", op="acquire")
        stop.set()
        assert lean_of(session).idle_count() == 0  # the cut connection is not reused
    assert cut.value.code == "bad_response" and cut.value.action is Action.RETRY
    assert "4 MiB" in cut.value.message


async def test_the_read_timeout_and_the_total_bound_a_call() -> None:
    done = asyncio.Event()

    async def silent(reader: Reader, writer: Writer, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 200 OK\r\n")  # a status line, then nothing
        await done.wait()

    async with serve(silent) as (base, _seen):
        for timeouts in (Timeouts(read=0.1), Timeouts(read=30, api_total=0.1)):
            async with api(base, timeouts) as session:
                with pytest.raises(TransferError) as slow:
                    await request(session, "POST", "x", provider="p", op="acquire", json={})
            assert slow.value.code == "timeout" and slow.value.action is Action.RETRY
        done.set()


async def answer_first_only(reader: Reader, writer: Writer, seen: Seen) -> None:
    """Answers a connection's first request; reads its second whole, then closes (a FIN)."""
    if seen.connections == 1:
        await read_request(reader, seen)
        writer.write(OK)
        await writer.drain()
        await read_request(reader, seen)
        return
    await keep_alive(reader, writer, seen)


async def test_a_stale_connection_resends_a_get_once_but_never_a_post() -> None:
    async with serve(answer_first_only) as (base, seen), api(base) as session:
        await request(session, "GET", "a", provider="p", op="acquire")
        again = await request(session, "GET", "b", provider="p", op="acquire")
    assert again.status == 200 and seen.connections == 2
    assert [r.line.split()[1] for r in seen.requests] == ["/a", "/b", "/b"]

    async with serve(answer_first_only) as (base, seen), api(base) as session:
        await request(session, "POST", "a", provider="p", op="acquire", json={})
        with pytest.raises(TransferError) as dropped:
            await request(session, "POST", "b", provider="p", op="acquire", json={})
    assert dropped.value.code == "network" and dropped.value.action is Action.RETRY
    assert [r.line.split()[1] for r in seen.requests] == ["/a", "/b"]  # sent once
    assert seen.connections == 1


async def test_errors_name_the_origin_only_and_never_a_secret() -> None:
    async with serve(keep_alive) as (base, _seen):
        pass  # the port is free again: nothing listens
    async with api(base) as session:
        with pytest.raises(TransferError) as refused:
            await request(session, "GET", f"a?token={KEY}", provider="p", op="acquire")
    assert refused.value.code == UNREACHABLE and refused.value.action is Action.RETRY
    assert refused.value.message == f"cannot reach {base}: connection refused"

    async def reset(reader: Reader, writer: Writer, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.transport.abort()

    async with serve(reset) as (base, _seen), api(base) as session:
        with pytest.raises(TransferError) as cut:
            await request(session, "GET", f"a?X-Amz-Signature={KEY}", provider="p", op="x")
    assert cut.value.code == "network"
    chain = [cut.value, cut.value.__cause__]
    assert all(KEY not in str(part) and KEY not in repr(part) for part in chain)


async def test_a_header_with_a_line_break_fails_the_item_before_sending() -> None:
    async with serve(keep_alive) as (base, seen), api(base) as session:
        with pytest.raises(TransferError) as unsafe:
            await request(session, "GET", "a", provider="p", op="x", headers={"X-N": "a\r\nB: c"})
    assert unsafe.value.code == "bad_request" and unsafe.value.action is Action.FAIL_ITEM
    assert seen.requests == []


async def test_the_fallback_and_a_proxy_send_by_aiohttp(monkeypatch: pytest.MonkeyPatch) -> None:
    async with serve(keep_alive) as (base, seen):
        async with api_session(base + "/", AUTH, Timeouts(), 2, "aiohttp") as session:
            assert session.lean is None
            await request(session, "GET", "a", provider="p", op="x")
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        async with api(base) as session:
            await request(session, "GET", "b", provider="p", op="x")
            await request(session, "HEAD", "c", provider="p", op="x")
            assert lean_of(session).opened == 0
    assert [r.line.split()[:2] for r in seen.requests] == [
        ["GET", "/a"],
        ["GET", "/b"],
        ["HEAD", "/c"],
    ]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in seen.requests)


async def test_an_oversized_body_by_aiohttp_is_a_bad_response_too() -> None:
    size = API_BODY_CAP + 1

    async def big(reader: Reader, writer: Writer, seen: Seen) -> None:
        await answer_with(
            reader,
            writer,
            seen,
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size,
        )

    async with (
        serve(big) as (base, _seen),
        api_session(base + "/", AUTH, Timeouts(), 2, "aiohttp") as session,
    ):
        with pytest.raises(TransferError) as cut:
            await request(session, "GET", "a", provider="p", op="x")
    assert cut.value.code == "bad_response" and cut.value.action is Action.RETRY


async def test_an_https_call_verifies_the_host_with_the_default_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca = trustme.CA()
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    monkeypatch.setattr(pool, "_ssl_context", trusting)  # the default context, plus this CA
    async with tls_server(ca) as (port, names, bodies), api(f"https://localhost:{port}") as s:
        for _ in range(2):
            answer = await request(s, "POST", "v3/x", provider="p", op="acquire", json={"a": 1})
            assert answer.status == 200
    assert names == ["localhost"] and bodies == [7, 7]  # one handshake, kept alive


async def test_a_change_to_the_sessions_headers_goes_out_on_the_next_call() -> None:
    """As aiohttp sends a session's defaults as they are at each request (a test, or a
    caller, may set another key on it)."""
    async with serve(keep_alive) as (base, seen), api(base) as session:
        await request(session, "GET", "a", provider="p", op="x")
        session.headers["Authorization"] = "Bearer other"
        await request(session, "GET", "b", provider="p", op="x")
    assert [r.headers["authorization"] for r in seen.requests] == [f"Bearer {KEY}", "Bearer other"]


async def test_a_call_leaves_after_the_callbacks_of_the_turn_that_asked_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The journal writes with a `call_soon` at the end of the turn (an item's ``up`` before
    its finalize call): on a warm connection the call must not reach the server before it."""
    order = heads_sent(monkeypatch)
    async with serve(keep_alive) as (base, _seen), api(base) as session:
        await request(session, "POST", "warm", provider="p", op="x", json={})
        order.clear()
        asyncio.get_running_loop().call_soon(order.append, "journaled")
        await request(session, "POST", "complete", provider="p", op="finalize", json={})
    assert order == ["journaled", "sent"]
