"""The PUT process: local-file PUTs sent for the engine's process over its own pool.

Owns the child's side of `ingest.transport.putproc`: reading job frames from
the socket it inherits, reading each job's file range, one PUT over a lean
`Pool` of its own (a kept-alive connection closed by the server before its
answer is tried once more on a fresh one, as `send.send_lean` does), and
writing one result frame a job.

How it works: started as ``python -m ingest.transport.putchild FD CONFIG``
(CONFIG: JSON of the pool's timeouts, limit and fixed headers). Frames both
ways are `putproc.pack`'s: a 4-byte length, then orjson. A job is ``[id,
url, headers, path, offset, length, whole]`` (``[id]`` alone cancels job
`id`); a result ``[id, kind, ...]`` (`putproc.Kind`). Results made in one
turn of the loop go out in one write. The file is read on this process's
loop (`os.pread`, the page cache in practice): its time is this process's,
not the engine's.

Invariants: every job gets exactly one result, unless it was cancelled;
the process ends when the engine's end of the socket closes (EOF) or the
engine dies (PR_SET_PDEATHSIG on Linux), its connections closed; a job's
body is at most `length` bytes of its file, and a whole-file job whose
file no longer has that length fails with `Kind.CHANGED`, not a cut PUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson
import yarl

from ingest.transport.connection import BadAnswer, Disconnected
from ingest.transport.pool import ConnectFailed, Pool, Stale, UnsafeRequest
from ingest.transport.putproc import CHUNK, Kind, Unpacker, pack

_COALESCE_S = float(os.environ.get("INGEST_PUTPROC_COALESCE_MS", "0")) / 1000
_SMALL = 256 * 1024  # read whole below this (as `storage.SMALL_FILE`)


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the engine's process dies (prctl PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


class FileChanged(Exception):
    """The file no longer has the length the job gave."""


def _read(fd: int, offset: int, length: int, whole: bool) -> bytes:
    data = os.pread(fd, length + 1 if whole else length, offset)
    if len(data) != length:
        if whole:
            now = str(len(data)) if len(data) < length else f"more than {length}"
            raise FileChanged(f"file changed size since it was checked: {now} != {length} bytes")
        raise FileChanged(f"file shrank: {len(data)} of {length} bytes at offset {offset}")
    return data


async def _chunks(fd: int, offset: int, length: int, whole: bool) -> AsyncIterator[bytes]:
    sent = 0
    while sent < length:
        want = min(CHUNK, length - sent)
        last = whole and sent + want == length
        chunk = os.pread(fd, want + 1 if last else want, offset + sent)
        if len(chunk) > want:
            raise FileChanged(f"file grew during upload: more than {length} bytes")
        if not chunk:
            break
        sent += len(chunk)
        yield chunk
    if sent != length:
        raise FileChanged(f"file shrank during upload: {sent} of {length} bytes")


class Child(asyncio.Protocol):
    """The engine's socket, seen from the PUT process."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: Pool) -> None:
        self._loop = loop
        self._pool = pool
        self._unpacker = Unpacker()
        self._out: list[bytes] = []
        self._flushing = False
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        for frame in self._unpacker.feed(data):
            job = orjson.loads(frame)
            if len(job) == 1:
                task = self._tasks.pop(job[0], None)
                if task is not None:
                    task.cancel()
                continue
            self._tasks[job[0]] = self._loop.create_task(self._put(*job))

    def eof_received(self) -> bool | None:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _end(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        if not self.done.done():
            self.done.set_result(None)

    def _answer(self, result: list[Any]) -> None:
        self._out.append(pack(result))
        if not self._flushing:
            self._flushing = True
            if _COALESCE_S and len(self._tasks) > 1:
                self._loop.call_later(_COALESCE_S, self._flush)
            else:
                self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        out, self._out = self._out, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(out)

    async def _put(
        self,
        job: int,
        url: str,
        headers: dict[str, str],
        path: str,
        offset: int,
        length: int,
        whole: bool,
    ) -> None:
        try:
            result = await self._send(
                job, yarl.URL(url, encoded=True), headers, path, offset, length, whole
            )
        except asyncio.CancelledError:
            return
        finally:
            self._tasks.pop(job, None)
        self._answer(result)

    async def _send(
        self,
        job: int,
        url: yarl.URL,
        headers: dict[str, str],
        path: str,
        offset: int,
        length: int,
        whole: bool,
    ) -> list[Any]:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            return [job, Kind.OSERROR, type(exc).__name__, exc.strerror or str(exc)]
        fresh = False
        try:
            while True:
                body: bytes | AsyncIterator[bytes]
                if length <= _SMALL:
                    body = _read(fd, offset, length, whole)
                else:
                    body = _chunks(fd, offset, length, whole)
                try:
                    answer = await self._pool.put(url, headers, body, fresh=fresh)
                except Stale:
                    if fresh:
                        raise
                    fresh = True
                    continue
                if 200 <= answer.status < 300:
                    return [job, Kind.ANSWER, answer.status]
                return [
                    job,
                    Kind.ANSWER,
                    answer.status,
                    [(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.raw_headers],
                    answer.body.decode("latin-1"),
                ]
        except FileChanged as exc:
            return [job, Kind.CHANGED, str(exc)]
        except ConnectFailed as exc:
            return [job, Kind.CONNECT, exc.why]
        except UnsafeRequest as exc:
            return [job, Kind.UNSAFE, str(exc)]
        except BadAnswer as exc:
            return [job, Kind.BAD_ANSWER, str(exc)]
        except Disconnected as exc:
            return [job, Kind.DISCONNECTED, str(exc), exc.clean]
        except TimeoutError as exc:
            return [job, Kind.TIMEOUT, str(exc)]
        except ConnectionError as exc:
            return [job, Kind.DISCONNECTED, f"{type(exc).__name__}: {exc}", False]
        except OSError as exc:
            return [job, Kind.OSERROR, type(exc).__name__, exc.strerror or str(exc)]
        finally:
            os.close(fd)


async def serve(sock: socket.socket, config: dict[str, Any]) -> None:
    """Serve jobs on `sock` until the engine's end closes."""
    loop = asyncio.get_running_loop()
    pool = Pool(
        connect_timeout=config["connect_timeout"],
        read_timeout=config["read_timeout"],
        limit=config["limit"],
        user_agent=config["user_agent"],
        headers=config.get("headers") or {},
    )
    _transport, child = await loop.connect_accepted_socket(lambda: Child(loop, pool), sock=sock)
    try:
        await child.done
    finally:
        pool.close()


def main(argv: list[str]) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the engine's; it ends us by EOF
    fd, config = int(argv[0]), orjson.loads(argv[1])
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    if os.getppid() != config.get("parent"):
        return  # the engine died before the death signal was set
    try:
        import uvloop

        uvloop.run(serve(sock, config))
    except ImportError:
        asyncio.run(serve(sock, config))


if __name__ == "__main__":
    main(sys.argv[1:])
