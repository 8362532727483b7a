"""A header value beyond latin-1 goes out on the lean transport as aiohttp sends it (UTF-8).

An API key pasted with a typographic quote (``sk-’abc``) reached the server
by aiohttp, whose 401 then stops the run with its one clear line; the lean
transport raised `UnicodeEncodeError` while building the request head, which
escaped `map_errors` as a traceback (exit 1).
"""

from __future__ import annotations

import pytest

from ingest.config import PutTransport
from ingest.http import Timeouts, api_session, request
from tests.unit.test_transport import Reader, Seen, Writer, read_request, serve

pytestmark = pytest.mark.anyio

REFUSED = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}"


async def refuse(reader: Reader, writer: Writer, seen: Seen) -> None:
    while await read_request(reader, seen) is not None:
        writer.write(REFUSED)
        await writer.drain()


@pytest.mark.parametrize("transport", ["lean", "aiohttp"])
async def test_a_key_beyond_latin_1_is_sent_as_aiohttp_sends_it(transport: PutTransport) -> None:
    key = "Bearer sk-\u2019abc"
    async with (
        serve(refuse) as (base, seen),
        api_session(base + "/", {"Authorization": key}, Timeouts(), 2, transport) as session,
    ):
        answer = await request(session, "POST", "v1/x", provider="p", op="acquire", json={})
    assert answer.status == 401  # the server's word, which the adapter turns into a stop
    [sent] = seen.requests  # the test server reads a head as latin-1: these are UTF-8 bytes
    assert sent.headers["authorization"].encode("latin-1") == key.encode()
