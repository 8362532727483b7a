"""API answers that misbehave, on the lean transport: an answer over the cap keeps no
more than a cut answer needs.

Each server is a scripted asyncio handler on a free loopback port
(`tests.unit.test_transport.serve`); each test waits for what it observes.
"""

from __future__ import annotations

import asyncio

import pytest
import yarl

from ingest.transport import Pool
from ingest.transport.response import API_BODY_CAP, BODY_CAP, Answer
from tests.unit.test_transport import Reader, Seen, Writer, read_request, serve

pytestmark = pytest.mark.anyio


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
