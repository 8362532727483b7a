"""The answer to one lean request: its status, headers and (capped) body, parsed by llhttp.

Owns `Answer` (what a PUT's caller reads) and `AnswerReader` (the callbacks
`httptools.HttpResponseParser` calls as bytes arrive on a connection).

How it works: one reader per connection, fed every byte the server sends;
llhttp (C) frames the answer (status line, headers, Content-Length, chunked
or read-until-close bodies) and calls back here. A 1xx answer (an unasked
``100 Continue``, a ``103 Early Hints``) is skipped: only a final status
completes a request. Header names and values are kept as bytes in a list
and decoded only when the caller reads `Answer.headers` (success answers,
nearly all of them, are never looked at).

Invariants: an answer's head is at most `HEAD_CAP` bytes (1xx answers
before it included), at most the reader's cap of a body is kept (`BODY_CAP`
for a PUT, as `storage` reads at most 64 KiB of an error answer;
`API_BODY_CAP` for an API call); `done` is set once per request, at the
final answer's end, or as soon as an answer's body runs past the cap (the
answer is then `cut` and the connection not reused). A cut answer keeps at
most `BODY_CAP` bytes of its body (no caller reads more of one) and, when
its Content-Length already says it is over the cap, is cut once that much
came: an API call told of a 200 MiB answer holds 64 KiB of it, not the 4
MiB cap (and the joined copy) for as long as its error is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

BODY_CAP = 64 * 1024  # storage's cap on an error body (aiohttp path: resp.content.read(64 KiB))
# An API answer is read whole up to this; one past it is `cut` (the caller's retryable
# bad_response), never held in memory. The adapters' answers are JSON of a few KiB; the
# cap leaves room for a long list page.
API_BODY_CAP = 4 * 1024 * 1024
# The most bytes before a final answer's headers end (1xx answers included). aiohttp
# bounds a head at 128 fields of at most 8190 bytes (client_proto.set_response_params);
# S3's heads are under 2 KiB. Without a bound, headers that never end grow memory while
# each byte re-arms the read timeout.
HEAD_CAP = 128 * 1024


class HeadTooLarge(Exception):
    """The answer's head (status line and headers) ran past `HEAD_CAP` bytes."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A final answer: status, raw headers, the first cap's bytes of its body."""

    status: int
    raw_headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    keep_alive: bool  # the server framed it so the connection can carry the next request
    cut: bool = False  # its body ran past the reader's cap: `body` is only the first part

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """Case-insensitive headers, decoded as latin-1 (as aiohttp does)."""
        return CIMultiDictProxy(
            CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw_headers)
        )


class AnswerReader:
    """httptools callbacks for one connection; `on_done` hears each final answer."""

    __slots__ = (
        "_body",
        "_body_len",
        "_cap",
        "_complete",
        "_framed",
        "_head_len",
        "_headed",
        "_headers",
        "_limit",
        "_on_done",
        "_status",
        "began",
        "parser",
        "spoiled",
        "started",
    )

    def __init__(self, on_done: Callable[[Answer], None], body_cap: int = BODY_CAP) -> None:
        self._on_done = on_done
        self._cap = body_cap
        self._limit = body_cap  # this answer's cut point: lower when it says it is over the cap
        self.parser = httptools.HttpResponseParser(self)
        # aiohttp's leniencies for answers (_http_parser.pyx, HttpResponseParser, outside
        # dev mode): a folded header (RFC 9112 5.2: a user agent MUST unfold it), a bare LF
        # line end (2.2: MAY), spaces after a chunk size. Both length headers stay an error.
        self.parser.set_dangerous_leniencies(
            lenient_headers=True,
            lenient_optional_cr_before_lf=True,
            lenient_spaces_after_chunk_size=True,
        )
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_len = 0
        self._status = 0
        self._complete = False  # this request's final answer was handed on
        self._framed = False  # Content-Length or chunked: llhttp knows where the body ends
        self._head_len = 0  # bytes fed before the final answer's headers ended
        self._headed = False  # the final answer's headers ended
        self.started = False  # a byte of this request's answer arrived
        self.began: float | None = None  # loop time its (final) answer's first byte came
        self.spoiled = False  # bytes beyond the answer: the connection is out of step

    def reset(self) -> None:
        """Before a request on this connection: forget the previous answer."""
        self._headers = []
        self._body = []
        self._body_len = 0
        self._limit = self._cap
        self._status = 0
        self._complete = False
        self._framed = False
        self._head_len = 0
        self._headed = False
        self.started = False
        self.began = None

    def feed(self, data: bytes) -> None:
        """Bytes from the server; raises `httptools.HttpParserError` on a malformed answer,
        `HeadTooLarge` once `HEAD_CAP` bytes came without the final answer's headers."""
        self.started = True
        self.parser.feed_data(data)
        if not self._headed:
            self._head_len += len(data)
            if self._head_len > HEAD_CAP:
                raise HeadTooLarge(f"answer's headers run past {HEAD_CAP // 1024} KiB")

    def until_close(self) -> Answer | None:
        """At EOF: the answer whose body runs to the close (no length, not chunked), if any."""
        if self._complete or self._status < 200 or self._framed:
            return None  # nothing final yet, or a framed body cut short
        return self._answer(keep_alive=False)

    def _answer(self, *, keep_alive: bool, cut: bool = False) -> Answer:
        self._complete = True
        parts, self._body = self._body, []
        body = b"".join(parts)
        if cut and len(body) > BODY_CAP:  # what a caller may read of a cut answer, no more: the
            body = body[:BODY_CAP]  # Answer can outlive the call (its error's traceback)
        return Answer(self._status, tuple(self._headers), body, keep_alive, cut)

    # httptools callbacks ---------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            self.spoiled = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        self._headed = self._status >= 200
        self._framed = any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self._headers
        )
        if self._cap > BODY_CAP and self._headed:  # an API answer: cut one that says it is over
            for name, value in self._headers:  # the cap once what a cut one keeps is in
                length = value.strip()
                if (
                    name.lower() == b"content-length"
                    and length.isdigit()
                    and int(length) > self._cap
                ):
                    self._limit = BODY_CAP

    def on_body(self, body: bytes) -> None:
        if self._status < 200 or self._complete:
            return
        room = self._limit - self._body_len
        if room > 0:
            self._body.append(body[:room] if len(body) > room else body)
        self._body_len += len(body)
        if self._body_len > self._limit:  # enough: no caller reads more of any answer, and a
            # body that never ends (each byte re-arming the read timeout) must not hang a request
            self._on_done(self._answer(keep_alive=False, cut=True))

    def on_message_complete(self) -> None:
        if self._status < 200:  # 1xx: an interim answer, the final one follows
            self._headers = []
            self._status = 0
            self.began = None  # the final answer's time starts with its own first byte
            return
        if not self._complete:
            self._on_done(self._answer(keep_alive=self.parser.should_keep_alive()))
