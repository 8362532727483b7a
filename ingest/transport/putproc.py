"""The engine's side of the PUT process: local-file PUTs handed to a child process.

Owns `PutProc` (the child started, fed jobs, its results handed back as a
PUT's answer or the exception the in-process transport would have raised),
the frame format both sides speak (`pack`, `Unpacker`) and the result
kinds (`Kind`).

How it works: the engine keeps every decision (acquire, retries, re-signs,
the journal, the error map: `ingest.storage` triages a child's answer as
its own). A PUT of a local file's range is a job ``[id, url, headers,
path, offset, length, whole]`` written to a socketpair; jobs made in one
turn of the loop go out in one write, by a `call_soon` made after the
turn's journal records were scheduled (`ingest.journal.writer` writes them
by a `call_soon` too, FIFO before this one), so no byte of an upload
leaves before its ``acq`` reached the OS (`send`'s invariant). The child
(`putchild`) sends it over its own kept-alive pool on the other core and
answers ``[id, kind, ...]``.

Invariants: a job's waiter ends exactly once: with the answer, the error
the child reported (rebuilt as the same exception class), or `Disconnected`
when the child ended with the job in flight (a retryable network error
once mapped); a cancelled waiter sends the child a cancel frame. Frames are
a 4-byte little-endian length and orjson.
"""

from __future__ import annotations

import asyncio
import enum
import os
import struct
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from ingest.transport.connection import BadAnswer, Disconnected
from ingest.transport.pool import ConnectFailed, UnsafeRequest

CHUNK = 256 * 1024  # a large body's read size (as `storage.CHUNK`)
_LEN = struct.Struct("<I")
_COALESCE_S = float(os.environ.get("INGEST_PUTPROC_COALESCE_MS", "0")) / 1000

Answered = tuple[int, bytes, Mapping[str, str]]


class Kind(enum.IntEnum):
    """What a result frame says."""

    ANSWER = 0  # [id, 0, status] or [id, 0, status, headers, body as latin-1]
    CONNECT = 1  # [id, 1, why]
    DISCONNECTED = 2  # [id, 2, message, clean]
    BAD_ANSWER = 3  # [id, 3, message]
    TIMEOUT = 4  # [id, 4, message]
    UNSAFE = 5  # [id, 5, message]
    CHANGED = 6  # [id, 6, message]: the file's length is not the job's
    OSERROR = 7  # [id, 7, exception class name, strerror]


class LocalFileError(Exception):
    """The child could not read the job's file as it was validated; `code` is the item's reason."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def pack(value: Any) -> bytes:
    data = orjson.dumps(value)
    return _LEN.pack(len(data)) + data


class Unpacker:
    """Frames out of a byte stream, as many as are whole."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> Iterator[bytes]:
        buf = self._buf + data if self._buf else data
        at, end = 0, len(buf)
        while end - at >= 4:
            (size,) = _LEN.unpack_from(buf, at)
            if end - at - 4 < size:
                break
            yield buf[at + 4 : at + 4 + size]
            at += 4 + size
        self._buf = buf[at:]


def _rebuild(result: list[Any]) -> BaseException:
    kind = result[1]
    if kind == Kind.CONNECT:
        return ConnectFailed(result[2])
    if kind == Kind.DISCONNECTED:
        return Disconnected(result[2], clean=bool(result[3]))
    if kind == Kind.BAD_ANSWER:
        return BadAnswer(result[2])
    if kind == Kind.TIMEOUT:
        return TimeoutError(result[2])
    if kind == Kind.UNSAFE:
        return UnsafeRequest(result[2])
    if kind == Kind.CHANGED:
        return LocalFileError(result[2], "file_changed")
    if kind == Kind.OSERROR:
        return LocalFileError(result[3], "unreadable")
    return BadAnswer(f"PUT process: unknown result kind {kind!r}")


class _Link(asyncio.Protocol):
    def __init__(self, owner: PutProc) -> None:
        self._owner = owner
        self._unpacker = Unpacker()

    def data_received(self, data: bytes) -> None:
        waiters = self._owner._waiters
        for frame in self._unpacker.feed(data):
            result = orjson.loads(frame)
            waiter = waiters.pop(result[0], None)
            if waiter is None or waiter.done():
                continue
            if result[1] == Kind.ANSWER:
                if len(result) == 3:
                    waiter.set_result((result[2], b"", {}))
                else:
                    waiter.set_result((result[2], result[4].encode("latin-1"), _headers(result[3])))
            else:
                waiter.set_exception(_rebuild(result))

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._lost()


def _headers(pairs: list[list[str]]) -> Mapping[str, str]:
    from multidict import CIMultiDict, CIMultiDictProxy

    return CIMultiDictProxy(CIMultiDict((k, v) for k, v in pairs))


class PutProc:
    """See the module docstring; `start` at wiring, `close` when the run ends."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._config = dict(config)
        self._waiters: dict[int, asyncio.Future[Answered]] = {}
        self._next = 0
        self._out: list[bytes] = []
        self._flushing = False
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.alive = False
        self.child_cpu_s = 0.0

    async def start(self) -> None:
        import socket

        loop = self._loop = asyncio.get_running_loop()
        mine, theirs = socket.socketpair()
        config = {**self._config, "parent": os.getpid()}
        try:
            # Once a run, at wiring: fork+exec is a few ms, and the child's start-up overlaps ours.
            self.process = subprocess.Popen(  # noqa: ASYNC220
                [
                    sys.executable,
                    "-m",
                    "ingest.transport.putchild",
                    str(theirs.fileno()),
                    orjson.dumps(config).decode(),
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        mine.setblocking(False)
        transport, _ = await loop.connect_accepted_socket(lambda: _Link(self), sock=mine)
        self._transport = transport
        self.alive = True

    async def put(
        self, url: str, headers: Mapping[str, str], path: str, offset: int, length: int, whole: bool
    ) -> Answered:
        """One PUT by the child; the answer as `send.send_lean` returns it, or its error."""
        if not self.alive or self._loop is None:
            raise Disconnected("the PUT process has ended")
        job = self._next = self._next + 1
        waiter: asyncio.Future[Answered] = self._loop.create_future()
        self._waiters[job] = waiter
        self._write(pack([job, url, headers, path, offset, length, whole]))
        try:
            return await waiter
        except asyncio.CancelledError:
            if self._waiters.pop(job, None) is not None and self.alive:
                self._write(pack([job]))
            raise

    def _write(self, frame: bytes) -> None:
        self._out.append(frame)
        if not self._flushing:
            self._flushing = True
            assert self._loop is not None
            if _COALESCE_S and len(self._waiters) > 1:
                self._loop.call_later(_COALESCE_S, self._flush)
            else:
                self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        out, self._out = self._out, []
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.writelines(out)

    def _lost(self) -> None:
        self.alive = False
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(Disconnected("the PUT process ended with this PUT in flight"))

    async def close(self) -> None:
        """End the child (EOF on its socket) and reap it."""
        self.alive = False
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        process = self.process
        if process is not None:
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(loop.run_in_executor(None, self._reap), 5.0)
            except TimeoutError:
                process.kill()
                await loop.run_in_executor(None, self._reap)

    def _reap(self) -> None:
        process = self.process
        assert process is not None
        if process.returncode is not None:
            return
        _pid, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        self.child_cpu_s = usage.ru_utime + usage.ru_stime
        stats = os.environ.get("INGEST_PUTPROC_STATS")  # a file the benchmark reads
        if stats:
            import resource

            me = resource.getrusage(resource.RUSAGE_SELF)
            with open(stats, "a") as fh:
                fh.write(f"{me.ru_utime + me.ru_stime:.3f} {self.child_cpu_s:.3f}\n")
