"""Appending to a journal: `Journal`, opened (locked, replayed, created) and written.

Owns the write path: records are buffered, written once per event-loop turn
(group commit), and fsynced by a background task at a bounded interval and on
close.

How it works: `Journal.open` takes the run lock, replays an existing journal
(cutting off a torn last line, compacting when it has grown well past one
record per item) or creates one with its header, and opens it for appending.
`record` serializes with orjson into a buffer and schedules one write for the
end of the loop turn.

Invariants:
- Records reach the OS at the end of the event-loop turn that produced them,
  and are fsynced at a bounded interval and on close. A SIGKILL therefore
  loses nothing already written; a power cut loses at most one interval, and
  those items are simply redone.
- A write that fails (a full disk) makes the journal refuse further records
  and calls `Journal.on_error`, so the run stops; what was written stays readable.
- No secrets: adapters never hand URLs or keys to the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path

import orjson

from ingest.errors import JournalError
from ingest.journal.header import Header
from ingest.journal.maintenance import (
    check_binding,
    compact,
    fsync_dir,
    lock,
    rebind,
    unlock,
)
from ingest.journal.reader import Replay, not_a_journal, replay
from ingest.journal.records import Record


def _io_reason(exc: OSError) -> str:
    """Why a journal write failed, in words a user can act on."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full (free some space, then run the same command to resume)"
    if exc.errno == errno.EFBIG:
        return "the file size limit was reached (raise `ulimit -f`, then resume)"
    return exc.strerror or str(exc)


def _compact_if_possible(path: Path) -> None:
    """Compact, or leave the journal as it is when there is no room to (it stays valid)."""
    try:
        compact(path)
    except OSError:
        with contextlib.suppress(OSError):
            path.with_name(path.name + ".compact").unlink()


class Journal:
    """An open, locked journal being appended to. Use `Journal.open`."""

    def __init__(self, path: Path, fd: int, lock_fd: int, sync_interval: float) -> None:
        self.path = path
        self._fd = fd
        self._lock_fd = lock_fd
        self._sync_interval = sync_interval
        self._buf = bytearray()
        self._scheduled = False
        self._dirty = False
        self._closed = False
        self.error: JournalError | None = None
        # Called (on the event loop's thread) when a write or sync fails, so the
        # run stops at once instead of at its next record.
        self.on_error: Callable[[JournalError], None] | None = None
        self.records_written = 0

    @classmethod
    def open(
        cls,
        path: Path,
        header: Header,
        *,
        force: bool = False,
        sync_interval: float = 0.5,
        compact_ratio: float = 1.5,
    ) -> tuple[Journal, Replay]:
        """Lock, replay (or create) and open for appending."""
        if path.is_dir():
            raise not_a_journal(path, IsADirectoryError(errno.EISDIR, str(path)))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock_fd = lock(path)
        except (FileExistsError, NotADirectoryError) as exc:
            raise not_a_journal(path, exc) from None
        except OSError as exc:
            raise JournalError(f"cannot open {path}: {_io_reason(exc)}") from exc
        try:
            if path.exists() and path.stat().st_size > 0:
                state = replay(path, fingerprints=True)
                kept = check_binding(path, state.header, header, force)
                if state.torn_tail:
                    with path.open("r+b") as fh:
                        fh.truncate(state.good_bytes)
                        fh.flush()
                        os.fsync(fh.fileno())
                if kept != state.header:  # forced onto a moved manifest
                    rebind(path, kept)
                    state.header = kept
                keys = len(state.done) + len(state.unfinished)
                if state.records > compact_ratio * keys + 1000:
                    _compact_if_possible(path)
            else:
                state = Replay(header=header, fingerprints=True)
                tmp = path.with_name(path.name + ".new")
                try:
                    with tmp.open("wb") as fh:
                        fh.write(orjson.dumps(header.to_record()) + b"\n")
                        fh.flush()
                        os.fsync(fh.fileno())
                except OSError:
                    with contextlib.suppress(OSError):
                        tmp.unlink()
                    raise
                os.replace(tmp, path)
                fsync_dir(path)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            # A full disk (or a file size limit) while creating or repairing the
            # journal: a clear error before any work, not a traceback.
            unlock(path, lock_fd)
            raise JournalError(f"cannot write {path}: {_io_reason(exc)}") from exc
        except BaseException:
            unlock(path, lock_fd)
            raise
        return cls(path, fd, lock_fd, sync_interval), state

    # -- writing -----------------------------------------------------------

    def record(self, rec: Record) -> None:
        """Append one record; it reaches the OS at the end of this loop turn."""
        if self.error is not None:
            raise self.error
        if self._closed:
            raise JournalError(f"{self.path} is closed")
        self._buf += orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE)
        self.records_written += 1
        if not self._scheduled:
            self._scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self._write_pending)
            except RuntimeError:  # no loop: write now
                self._write_pending()

    def _write_pending(self) -> None:
        self._scheduled = False
        if not self._buf or self.error is not None:
            return
        data = memoryview(bytes(self._buf))
        self._buf.clear()
        try:
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
        except OSError as exc:
            # Whatever part of the batch reached the file ends in a torn line,
            # which replay tolerates; nothing is written after it.
            self._dirty = True
            self._failed(JournalError(f"cannot write {self.path}: {_io_reason(exc)}"))
            return
        self._dirty = True

    def _failed(self, error: JournalError) -> None:
        if self.error is None:
            self.error = error
            if self.on_error is not None:
                self.on_error(error)

    def sync(self) -> None:
        """Write what is buffered and fsync (blocking; use at exit)."""
        self._write_pending()
        if self._dirty:
            # Even after a write error: what did reach the file should be durable.
            self._dirty = False
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self._failed(JournalError(f"cannot sync {self.path}: {_io_reason(exc)}"))

    async def syncer(self) -> None:
        """Fsync at the configured interval while records arrive (a background task)."""
        import anyio

        while True:
            await anyio.sleep(self._sync_interval)
            if self._dirty:
                self._dirty = False
                failure = await anyio.to_thread.run_sync(self._fsync_quietly)
                if failure is not None:
                    self._failed(failure)

    def _fsync_quietly(self) -> JournalError | None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            return JournalError(f"cannot sync {self.path}: {_io_reason(exc)}")
        return None

    def close(self) -> None:
        if self._closed:
            return
        with contextlib.suppress(OSError):
            self.sync()
        self._closed = True
        os.close(self._fd)
        unlock(self.path, self._lock_fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
