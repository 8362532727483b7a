"""One kept-alive HTTP/1.1 connection of the lean transport, as an asyncio Protocol.

Owns the socket's side of one request at a time: writing the request (head
and body) with the transport's write flow control, feeding the answer to
its `AnswerReader`, the read timeout, and telling whether the connection
can carry the next request.

How it works: `send_head` writes the request line and headers (and a bytes
body) in one `transport.write`; `send_chunk` writes a body chunk and waits
only while the transport has paused writing (`pause_writing` /
`resume_writing`: its buffer is above the high-water mark), so a 16 MiB
body is never buffered whole. `answer()` waits for the final answer; bytes
arrive through `data_received` into llhttp. The read timeout is one timer a
request: it fires after `read_timeout` s and re-arms itself while the
connection saw progress since (bytes in, or the write buffer drained), so
no timer is made per chunk; an API call's total bound (`deadline`) is
kept on that same timer, not on a timer of its own. Time the request spends waiting for its own
body's next chunk (`sourcing`: the byte budget, a remote source streamed in)
is not counted, as aiohttp starts its read timeout only once the body is out.
Once an answer's first byte came, the read timeout also bounds the whole
answer (`SlowAnswer`): every answer read here is small (capped at 64 KiB
or 4 MiB), and one trickling a byte at a time would otherwise re-arm it
for ever (aiohttp's sock_read), as curl's ``--speed-limit`` exists to stop.

Invariants: a request's waiter ends exactly once, with the answer or an
error (`Disconnected`, `TimeoutError`, `BadAnswer`, `SlowAnswer`); a connection is
reusable only after a keep-alive final answer to a request whose body went
out whole, and while the server has not closed it (an idle connection the
server closes is dropped from the pool as soon as the close is seen).
"""

from __future__ import annotations

import asyncio
from typing import cast

import httptools

from ingest.transport.response import BODY_CAP, Answer, AnswerReader, HeadTooLarge


class Disconnected(ConnectionError):
    """The server closed (or reset) the connection before its answer was whole.

    `clean`: it was closed with a FIN (as a server closes an idle kept-alive
    connection), not reset.
    """

    def __init__(self, message: str, *, clean: bool = False) -> None:
        super().__init__(message)
        self.clean = clean


class BadAnswer(ConnectionError):
    """The server's bytes are not an HTTP/1.1 answer llhttp can frame."""


class SlowAnswer(BadAnswer):
    """The answer began but was not whole within the read timeout of its first byte."""


class Connection(asyncio.Protocol):
    """See the module docstring; made by `loop.create_connection`."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, read_timeout: float, body_cap: int = BODY_CAP
    ) -> None:
        self._loop = loop
        self._read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self._reader = AnswerReader(self._answered, body_cap)
        self._waiter: asyncio.Future[Answer] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # the request's total bound (loop time), if any
        self._progress = 0.0  # loop time of the last sign of life during a request
        self._sourcing = False  # the request waits for its own body's next chunk
        self.closed = False  # the server closed, or we did
        self._ours = False  # we closed it (a request ended badly, or the pool closed)
        self.answer: Answer | None = None
        self.requests = 0  # requests begun on this connection
        self.idle_since = 0.0  # loop time it went back to the pool (the pool sets it)

    # asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        now = self._progress = self._loop.time()
        if not self.answer_pending:
            # Bytes while nothing is asked: the connection is out of step.
            self.close()
            return
        reader = self._reader
        if reader.began is None:
            reader.began = now
        try:
            reader.feed(data)
        except HeadTooLarge as exc:
            self._fail(BadAnswer(str(exc)))
        except httptools.HttpParserUpgrade:
            self._fail(BadAnswer("server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(BadAnswer(f"malformed answer: {exc}"))

    def eof_received(self) -> bool | None:
        answer = self._reader.until_close()
        if answer is not None:
            self._answered(answer)
        self._lost(None)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None and self.answer_pending:
            # uvloop's TLS transport ends a connection closed without close_notify here,
            # with no eof_received: a body read to the close ends as at EOF (as aiohttp's
            # connection_lost feeds its parser the EOF).
            answer = self._reader.until_close()
            if answer is not None:
                self._answered(answer)
        self._lost(exc)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._progress = self._loop.time()
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # requests ----------------------------------------------------------------

    def now(self) -> float:
        """Its loop's time (asyncio.get_running_loop costs a getpid syscall on 3.11)."""
        return self._loop.time()

    @property
    def answer_pending(self) -> bool:
        return self._waiter is not None and not self._waiter.done()

    @property
    def started(self) -> bool:
        """A byte of this request's answer has arrived."""
        return self._reader.started

    def send_head(self, head: bytes, body: bytes = b"", deadline: float | None = None) -> None:
        """Begin a request: write its head (and a bytes `body` with it: one write, no join
        on uvloop). `deadline` (loop time): the whole request ends by then or fails with a
        `TimeoutError` (an API call's total bound, on the read timeout's timer)."""
        transport = self.transport
        if transport is None or self.closed:
            raise Disconnected("connection closed before the request")
        self.requests += 1
        self.answer = None
        self._reader.reset()
        self._waiter = self._loop.create_future()
        self._deadline = deadline
        now = self._progress = self._loop.time()
        due = now + self._read_timeout
        self._timer = self._loop.call_at(
            due if deadline is None or due < deadline else max(deadline, now), self._check_timeout
        )
        if body:
            transport.writelines((head, body))
        else:
            transport.write(head)

    async def send_chunk(self, chunk: bytes) -> bool:
        """Write one body chunk; False once the request is over (answered early, or closed)."""
        transport = self.transport
        if self.closed or transport is None or self._waiter is None or self._waiter.done():
            return False
        transport.write(chunk)
        self._progress = self._loop.time()
        if self._paused:
            drain = self._drain = self._loop.create_future()
            await drain  # also woken when the request ends (an early answer, a close, the timeout)
            return not self._waiter.done()
        return True

    def sourcing(self, waiting: bool) -> None:
        """The request is (or is no longer) waiting for its body's next chunk: time spent
        so is not the server's, and the read timeout does not count it."""
        self._sourcing = waiting
        self._progress = self._loop.time()

    async def wait_answer(self) -> Answer:
        """The final answer to the current request (raises what ended it otherwise)."""
        assert self._waiter is not None
        return await self._waiter

    def finish(self) -> None:
        """After a request, however it ended: no timer left, no error left unretrieved."""
        self._stop_timer()
        waiter = self._waiter
        if waiter is not None:
            if not waiter.done():
                waiter.cancel()
            elif not waiter.cancelled():
                waiter.exception()  # marks it retrieved (asyncio logs unretrieved errors)

    def reusable(self) -> bool:
        answer = self.answer
        return (
            answer is not None
            and answer.keep_alive
            and not self.closed
            and not self._paused
            and not self._reader.spoiled
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self) -> None:
        self.closed = self._ours = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = self._ours = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.abort()

    # inside ------------------------------------------------------------------

    def _answered(self, answer: Answer) -> None:
        self.answer = answer
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)
        self._wake_drain()

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self._wake_drain()
        self.abort()

    def _lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._ours:
                err = Disconnected("connection closed by this client (the run is ending)")
            elif exc is None:
                # A status line came, then the close: it answered, but not whole.
                when = "mid-answer" if self._reader.started else "before answering"
                err = Disconnected(f"server closed the connection {when}", clean=True)
            else:
                err = Disconnected(f"connection lost before the answer: {exc}")
            waiter.set_exception(err)
        self._wake_drain()

    def _wake_drain(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _check_timeout(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._sourcing:  # our body is slow, not the server: wait on from now
            self._progress = self._loop.time()
        due = self._progress + self._read_timeout
        began = self._reader.began
        whole_by = due if began is None else began + self._read_timeout
        now, deadline = self._loop.time(), self._deadline
        if deadline is not None and now >= deadline:
            self._fail(TimeoutError("no whole answer within the call's total time"))
            return
        if now < min(due, whole_by):  # progress since the timer was set: wait on
            wake = min(due, whole_by) if deadline is None else min(due, whole_by, deadline)
            self._timer = self._loop.call_at(wake, self._check_timeout)
            return
        if whole_by < due:  # bytes keep coming, too slowly for an answer this small
            self._fail(
                SlowAnswer(f"answer not whole {self._read_timeout:g} s after its first byte")
            )
            return
        self._fail(TimeoutError(f"no answer in {self._read_timeout:g} s"))

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
