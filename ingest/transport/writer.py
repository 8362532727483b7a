"""A request's head and bytes body written from a thread: the loopback send off the loop's.

Owns `Writer` and `writer()`, a prototype chosen only by ``INGEST_PUT_WRITER=thread``
in the environment (benchmarks/reference.py's ``ingest-threadput`` client; no
default, no setting): a PUT's ``writev`` of head and body is kernel work, 20 % of
a 10,000-file run's samples on the loop's thread (the receiver's TCP processing
included, as loopback does it in the sender's context), and ``os.writev``
releases the GIL, so a second core can do it.

How it works: `Connection.send_head` hands (connection, head, body) to one daemon
thread through a `SimpleQueue` (no loop wake-up per item) when the connection is
plain TCP and its transport holds nothing unsent. The thread does one
non-blocking ``writev`` on the socket's descriptor while holding the
connection's lock; whatever the socket did not take (a full send buffer) is
handed back to the loop (`call_soon_threadsafe`) and written by the transport,
in order, as any chunk is.

Invariants: while the thread writes, the descriptor stays open and the
connection is not given back or closed: `Connection.close`, `abort` and
`reusable` take its lock first, which the thread holds only across one
non-blocking ``writev`` (never a wait on the peer). Nothing else writes to
the connection during that request, so the bytes go out in order.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Protocol

MIN_BODY = 16 * 1024  # smaller bodies are cheaper written on the loop than handed over


class Written(Protocol):
    """What the thread needs of a connection (`Connection`)."""

    write_lock: threading.Lock
    rest_pending: bool

    def rest_from_thread(self, rest: memoryview) -> None: ...


Job = tuple[Written, int, bytes, bytes, Callable[[Callable[[], object]], object]]


class Writer:
    """One daemon thread writing the jobs `submit` queues, one at a time."""

    def __init__(self) -> None:
        self._jobs: SimpleQueue[Job | None] = SimpleQueue()
        self.written = self.partial = 0  # jobs done, and those the socket took only part of
        self._thread = threading.Thread(target=self._run, name="ingest-put-writer", daemon=True)
        self._thread.start()

    def submit(
        self,
        conn: Written,
        fd: int,
        head: bytes,
        body: bytes,
        call_soon_threadsafe: Callable[[Callable[[], object]], object],
    ) -> None:
        """Queue a write; `conn.write_lock` must be held (the caller took it: released here
        by the thread once the bytes are in the socket or handed back)."""
        self._jobs.put((conn, fd, head, body, call_soon_threadsafe))

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            conn, fd, head, body, call_soon = job
            try:
                try:
                    sent = os.writev(fd, (head, body))
                except BlockingIOError:
                    sent = 0
                except OSError:
                    sent = 0  # the transport meets the same error with the rest, and reports it
                self.written += 1
                if sent < len(head) + len(body):
                    self.partial += 1
                    rest = memoryview(head + body if sent < len(head) else body)
                    rest = rest[sent:] if sent < len(head) else rest[sent - len(head) :]
                    conn.rest_pending = True
                    call_soon(_rest(conn, rest))
            finally:
                conn.write_lock.release()


def _rest(conn: Written, rest: memoryview) -> Callable[[], None]:
    return lambda: conn.rest_from_thread(rest)


_writer: Writer | None = None
_chosen = os.environ.get("INGEST_PUT_WRITER") == "thread"


def writer() -> Writer | None:
    """The process's writer thread when ``INGEST_PUT_WRITER=thread``, else None."""
    global _writer
    if not _chosen:
        return None
    if _writer is None:
        _writer = Writer()
    return _writer
