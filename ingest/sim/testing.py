"""Wire-level helpers for tests that talk to the emulator.

Owns the few things an HTTP client library will not do on purpose: sending a
request byte for byte (no Content-Length, a body cut short) and reading
whatever comes back, including nothing at all when the connection drops.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import yarl


@dataclass(frozen=True, slots=True)
class RawResponse:
    """One HTTP/1.1 response as read off the socket."""

    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


def request_target(url: str) -> str:
    """The raw path and query of `url`, exactly as written (no re-encoding)."""
    parsed = yarl.URL(url, encoded=True)
    return parsed.raw_path_qs


async def raw_exchange(
    base_url: str, request: bytes, *, half_close: bool = False
) -> RawResponse | None:
    """Send `request` as is and read one final response; None if the server sent nothing.

    Interim 1xx responses are skipped. Reading stops once the response's
    Content-Length is complete, or at end of stream when it has none. With
    `half_close` the write side is shut after sending, so the server sees the
    end of the stream (a body shorter than its Content-Length ends there).
    """
    url = yarl.URL(base_url)
    assert url.host is not None
    assert url.port is not None
    data = b""
    async with await anyio.connect_tcp(url.host, url.port) as stream:
        await stream.send(request)
        if half_close:
            await stream.send_eof()
        while (response := _parse(data, final=False)) is None:
            try:
                data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                return _parse(data, final=True)
    return response


def _parse(data: bytes, *, final: bool) -> RawResponse | None:
    """The final response in `data` if it is complete (or whatever there is, when `final`)."""
    rest = data
    while True:
        head, sep, body = rest.partition(b"\r\n\r\n")
        if not sep:
            return None
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        if 100 <= status < 200:
            rest = body
            continue
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = headers.get("content-length")
        if length is not None and len(body) >= int(length):
            body = body[: int(length)]
        elif not final:
            return None
        return RawResponse(status=status, headers=headers, body=body)
