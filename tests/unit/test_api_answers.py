"""API answers that misbehave slowly, hugely or half-compressed, on the lean transport:
a trickle is cut by the read timeout as a whole (not re-armed by each byte), an answer
over the cap keeps no more than a cut answer needs, a gzip body cut short is an error of
its own (not a partial decode that then fails to parse).

Each server is a scripted asyncio handler on a free loopback port
(`tests.unit.test_transport.serve`); each test waits for what it observes.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib

import pytest
import yarl

from ingest.errors import Action, TransferError
from ingest.http import Timeouts, request
from ingest.transport import Pool
from ingest.transport.response import API_BODY_CAP, BODY_CAP, Answer
from tests.unit.test_transport import Reader, Seen, Writer, read_request, serve
from tests.unit.test_transport_api import api

pytestmark = pytest.mark.anyio


async def test_a_trickling_answer_is_cut_by_the_read_timeout_as_a_whole() -> None:
    """One byte every 20 ms re-armed a 0.3 s read timeout for ever (only api_total, here
    20 s, ended the call); now the answer must be whole 0.3 s after its first byte, and
    the retried error names the call and its host, the query's values masked."""
    stop = asyncio.Event()

    async def trickle(reader: Reader, writer: Writer, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        while not stop.is_set():
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.02)  # the server's pace, not the test's wait

    async with serve(trickle) as (base, _seen), api(base, Timeouts(read=0.3, api_total=20)) as s:
        began = time.monotonic()
        with pytest.raises(TransferError) as slow:
            await request(s, "GET", "v1/models?token=sk-secret-1", provider="p", op="acquire")
        took = time.monotonic() - began
        stop.set()
    assert slow.value.action is Action.RETRY and slow.value.code == "network"
    host = base.removeprefix("http://")
    assert f"GET http://{host}/v1/models?token=REDACTED" in slow.value.message
    assert "answer not whole 0.3 s after its first byte" in slow.value.message
    assert "sk-secret-1" not in str(slow.value)
    assert took < 5  # well under api_total: the read timeout's bound, with room for load


async def test_a_status_line_then_silence_is_still_a_timeout() -> None:
    """The whole-answer bound does not change what a stall is: no byte for the read
    timeout is a timeout, as before."""
    done = asyncio.Event()

    async def silent(reader: Reader, writer: Writer, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        await done.wait()

    async with serve(silent) as (base, _seen), api(base, Timeouts(read=0.2)) as session:
        with pytest.raises(TransferError) as stalled:
            await request(session, "GET", "x", provider="p", op="acquire")
        done.set()
    assert stalled.value.code == "timeout"


async def api_answer(head: bytes, body: bytes, *, then_more: bool) -> Answer:
    """What an API pool's `send` returns from a server that answers `head`, then `body`
    (then, with `then_more`, that again until the client goes), then waits."""
    gone = asyncio.Event()

    async def answer(reader: Reader, writer: Writer, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.write(head + body)
        while then_more and not gone.is_set():
            writer.write(body)
            await writer.drain()
        await gone.wait()

    async with serve(answer) as (base, _seen):
        pool = Pool(
            connect_timeout=5,
            read_timeout=10,
            limit=2,
            user_agent="t",
            body_cap=API_BODY_CAP,
            keep_refused=True,
        )
        try:
            return await pool.send("GET", yarl.URL(base + "/list"), {}, b"")
        finally:
            gone.set()
            pool.close()


async def test_an_answer_declared_over_the_cap_is_cut_once_a_cut_answers_share_came() -> None:
    """A 200 MiB Content-Length was read to the 4 MiB cap and joined into a second copy,
    which its error kept alive while the item waited to retry (16 calls in flight and
    every item in backoff: a run's peak went 43 -> 323 MB). Now it is cut once 64 KiB
    came: this server sends no more than that and waits, which the old reader sat
    through to its read timeout."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (200 * 1024 * 1024)
    answer = await api_answer(head, b"x" * (BODY_CAP + 1), then_more=False)
    assert answer.cut and answer.body == b"x" * BODY_CAP


async def test_an_endless_answer_keeps_only_what_a_cut_answer_needs() -> None:
    """A chunked answer past the cap is read to the cap (its length is unknown), but the
    cut answer keeps 64 KiB, not the 4 MiB its parts were."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n%s\r\n" % (65536, b"y" * 65536)
    answer = await api_answer(head, chunk, then_more=True)
    assert answer.cut and answer.body == b"y" * BODY_CAP


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_compressed_answer_cut_short_is_a_network_error_of_its_own(coding: str) -> None:
    """Its framing is whole (Content-Length) but its compressed stream stops: it decoded
    to a partial JSON that then failed to parse (a bad_response 'answer lacks …'); now
    it says it was cut short, and is retried as the network error it is."""
    whole = b'{"assets_id": "a1", "upload_url": "http://x/y", "padding": "' + b"p" * 4000 + b'"}'
    packed = gzip.compress(whole) if coding == "gzip" else zlib.compress(whole)
    cut = packed[: len(packed) // 2]

    async def short(reader: Reader, writer: Writer, seen: Seen) -> None:
        while await read_request(reader, seen) is not None:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s"
                % (coding.encode(), len(cut), cut)
            )
            await writer.drain()

    async with serve(short) as (base, _seen), api(base) as session:
        with pytest.raises(TransferError) as broken:
            await request(session, "POST", "v3/assets", provider="p", op="acquire", json={})
    assert broken.value.action is Action.RETRY and broken.value.code == "network"
    assert f"answer's {coding} body is cut short" in broken.value.message
