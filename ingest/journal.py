"""The journal: an append-only JSON-lines log of every item's state transitions.

Layout: line 1 is a header binding the journal to its provider, manifest and
the settings that matter; each later line is one record, written by orjson:

    {"s":"run", "t":…}                        a run (or resume) started
    {"s":"acq", "k":key, "r":remote_id}       an upload target was acquired
    {"s":"up",  "k":key, "r":…, "x":{…}}      bytes landed, finalize pending
    {"s":"done","k":key, "r":…, "u":url?, "z":size, "m":mtime_ns, "x":{…}}
    {"s":"fail","k":key, "l":line, "a":action, "c":code, "e":message}
    {"s":"bad", "k":key?, "l":line, "e":reason}  rejected locally (manifest/validation)
    {"s":"end", "n":entries}                  the manifest was read to its end

Invariants:
- Records reach the OS at the end of the event-loop turn that produced them
  (one write per turn: group commit), and are fsynced at a bounded interval and
  on close. A SIGKILL therefore loses nothing already written; a power cut
  loses at most one interval, and those items are simply redone.
- Replay tolerates a torn last line (and cuts it off before appending); damage
  anywhere else is `JournalCorrupt` with its line number, never silently dropped.
  `repair` (``ingest repair``) rewrites such a journal keeping every intact record.
- A write that fails (a full disk) makes the journal refuse further records and
  calls `Journal.on_error`, so the run stops; what was written stays readable.
- One run at a time: an exclusive lock on `<journal>.lock`.
- No secrets: adapters never hand URLs or keys to the journal.
- State per item is the last record for its key; counts are derived from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import itertools
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ingest.digestset import DigestSet, digest64
from ingest.errors import JournalCorrupt, JournalError, JournalLocked, JournalMismatch

FORMAT = "ingest-journal"
_BLOCK = 1 << 18  # 256 KiB: as fast as larger blocks, and the split list stays small
VERSION = 1

Record = dict[str, Any]


def key_digest(key: str) -> int:
    """A 64-bit digest of an item key: what replay keeps for done items."""
    return digest64(key)


_MASK64 = (1 << 64) - 1


def fingerprint(size: int, mtime_ns: int) -> int:
    """A 64-bit fingerprint of a file's size and modification time."""
    return ((size * 0x9E3779B97F4A7C15) ^ mtime_ns) & 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True, slots=True)
class Header:
    """What a journal is bound to."""

    provider: str
    manifest: str
    bind: Mapping[str, str] = field(default_factory=dict)
    created: float = 0.0

    def to_record(self) -> Record:
        return {
            "journal": FORMAT,
            "v": VERSION,
            "provider": self.provider,
            "manifest": self.manifest,
            "bind": dict(self.bind),
            "created": self.created,
        }

    @classmethod
    def from_record(cls, rec: Any, path: Path) -> Header:
        if not isinstance(rec, dict) or rec.get("journal") != FORMAT:
            raise JournalCorrupt("not an ingest journal (bad header)", path=str(path), line=1)
        if rec.get("v") != VERSION:
            raise JournalCorrupt(
                f"unsupported journal version {rec.get('v')!r}", path=str(path), line=1
            )
        return cls(
            provider=str(rec.get("provider", "")),
            manifest=str(rec.get("manifest", "")),
            bind={str(k): str(v) for k, v in (rec.get("bind") or {}).items()},
            created=float(rec.get("created", 0.0)),
        )


@dataclass(slots=True)
class Replay:
    """The state a journal describes, kept compact enough for 10^6 items.

    Done items are kept as 64-bit digests in a `DigestSet` (~17 bytes each);
    with `fingerprints` (a resume checks for changed files; `status` and the
    end-of-run summary need not), each with its file's size/mtime fingerprint
    in the same table (~34 bytes each). Every other item's last record is kept
    whole (few of them: in flight, failed, rejected).
    """

    header: Header
    fingerprints: bool = False
    done: DigestSet = field(default_factory=DigestSet)
    pending: dict[str, Record] = field(default_factory=dict)
    bad_lines: int = 0  # rejected manifest lines without a key, in the latest run
    total: int | None = None
    runs: int = 0
    records: int = 0
    good_bytes: int = 0  # offset of the end of the last complete record
    torn_tail: bool = False

    def __post_init__(self) -> None:
        if self.fingerprints and not self.done.has_values:
            self.done = DigestSet(values=True)

    def apply(self, rec: Record) -> None:
        state = rec.get("s")
        key = rec.get("k")
        if isinstance(key, str):
            digest = (hash(key) & _MASK64) or 1  # `key_digest`, inlined: 2·10^6 calls a replay
            if state == "done":
                if self.fingerprints:
                    size, mtime = int(rec.get("z", 0)), int(rec.get("m", 0))
                    self.done.add(digest, fingerprint(size, mtime))
                else:
                    self.done.add(digest)
                self.pending.pop(key, None)
            else:
                self.pending[key] = rec
                self.done.discard(digest)
        elif state == "bad":
            self.bad_lines += 1
        elif state == "run":
            self.runs += 1
            self.bad_lines = 0
        elif state == "end":
            self.total = int(rec.get("n", 0))

    def is_done(self, key: str) -> bool:
        return key_digest(key) in self.done

    def fingerprint_of(self, key: str) -> int | None:
        """The size/mtime fingerprint recorded when `key` was done (needs `fingerprints=True`)."""
        return self.done.get(key_digest(key)) if self.fingerprints else None

    def counts(self) -> dict[str, int]:
        """Item counts by state, derived from the records."""
        counts = {"done": len(self.done), "failed": 0, "rejected": self.bad_lines, "in_flight": 0}
        for rec in self.pending.values():
            counts[count_of(rec.get("s"))] += 1
        return counts


_COUNTS = {"done": "done", "fail": "failed", "bad": "rejected"}


def count_of(state: object) -> str:
    """The count ("done", "failed", "rejected", "in_flight") an item in `state` falls under."""
    return _COUNTS.get(str(state), "in_flight")


def _lines(path: Path) -> Iterator[tuple[int, int, bytes, bool]]:
    """(line number, end offset, line without its newline, complete) for every line.

    Read in `_BLOCK`s (a replay of 10^6 items reads 2·10^6 lines); only the
    last line can be incomplete (no newline: a torn write).
    """
    number = offset = 0
    carry = b""
    with path.open("rb") as fh:
        while block := fh.read(_BLOCK):
            lines = (carry + block).split(b"\n") if carry else block.split(b"\n")
            carry = lines.pop()
            for line in lines:
                number += 1
                offset += len(line) + 1
                yield number, offset, line, True
    if carry:
        yield number + 1, offset + len(carry), carry, False


def replay(path: Path, *, fingerprints: bool = False) -> Replay:
    """Read a journal; a torn last line is noted, damage elsewhere raises.

    `fingerprints` also keeps each done item's size/mtime fingerprint (for a
    resume's changed-file check; ~100 bytes an item more).
    """
    result: Replay | None = None
    pending_error: tuple[int, str] | None = None
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    records = good_bytes = 0
    for number, end, line, complete in _lines(path):
        if pending_error is not None:
            # A bad line followed by more lines: damage in the middle.
            raise JournalCorrupt(
                f"{pending_error[1]}, with more records after it; run `ingest repair {path}` "
                "to keep every intact record (the items whose records are lost are redone)",
                path=str(path),
                line=pending_error[0],
            )
        try:
            rec = loads(line) if complete else None
        except decode_error:
            rec = None
        if not isinstance(rec, dict):
            if number == 1 and complete:
                raise JournalCorrupt("not an ingest journal (bad header)", path=str(path), line=1)
            pending_error = (number, "unreadable record" if complete else "torn record")
            continue
        if result is None:
            result = Replay(
                header=Header.from_record(rec, path),
                fingerprints=fingerprints,
            )
        else:
            result.apply(rec)
            records += 1
        good_bytes = end
    if result is None:
        raise JournalCorrupt("journal is empty or its header is torn", path=str(path), line=1)
    result.records, result.good_bytes = records, good_bytes
    result.torn_tail = pending_error is not None
    return result


def peek_header(path: Path) -> Header | None:
    """The header of an existing journal, or None when there is none yet."""
    try:
        with path.open("rb") as fh:
            first = fh.readline()
    except FileNotFoundError:
        return None
    if not first.endswith(b"\n"):
        return None
    try:
        return Header.from_record(orjson.loads(first), path)
    except (orjson.JSONDecodeError, JournalCorrupt):
        return None


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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(path: Path) -> int:
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise JournalLocked(
            f"{path} is in use by another ingest run (pid {holder}); wait for it or stop it"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def compact(path: Path) -> int:
    """Rewrite the journal with one record per item; returns records dropped.

    Keeps the header, the latest run marker, the last record of every key,
    the unkeyed rejections of the latest run and the latest end marker.
    Written to a temporary file, fsynced, then renamed over the original.
    """
    last = DigestSet(values=True)  # key digest -> its last line: flat at 10^6 keys
    last_run = last_end = lines = 0
    for number, _end, line, complete in _lines(path):
        lines = number
        if number == 1:
            continue
        rec = orjson.loads(line) if complete else None
        if not isinstance(rec, dict):
            continue
        key = rec.get("k")
        if isinstance(key, str):
            last.add(key_digest(key), number)
        elif rec.get("s") == "run":
            last_run = number
        elif rec.get("s") == "end":
            last_end = number
    keep = bytearray(lines // 8 + 1)  # a bit per line to keep
    for line_number in itertools.chain((1, last_run, last_end), (n for _, n in last.items())):
        keep[line_number >> 3] |= 1 << (line_number & 7)
    tmp = path.with_name(path.name + ".compact")
    dropped = 0
    with tmp.open("wb") as out:
        for number, _end, line, complete in _lines(path):
            if not complete:
                continue
            if keep[number >> 3] & (1 << (number & 7)) or (
                number > last_run and b'"s":"bad"' in line and b'"k"' not in line
            ):
                out.write(line + b"\n")
            else:
                dropped += 1
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    _fsync_dir(path)
    return dropped


@dataclass(frozen=True, slots=True)
class Repair:
    """What `repair` kept and dropped."""

    kept: int  # records kept, the header not counted
    dropped: tuple[tuple[int, str], ...]  # (line number, why) of every line left out
    backup: Path | None  # the original, copied aside before the rewrite (None: not rewritten)


def repair(path: Path, *, dry_run: bool = False) -> Repair:
    """Rewrite a damaged journal keeping every intact record, in order.

    A line is intact when it is one complete JSON object (NUL bytes before it,
    which some filesystems leave after a power cut, are ignored). The header
    must be intact: without it the journal's binding is lost, so that is a
    `JournalCorrupt` error. Items whose records are dropped are simply redone
    by the next run. The original is copied to ``<journal>.damaged`` (or
    ``.damaged.N``) first, and the rewrite goes through a temporary file and a
    rename, so a crash during repair leaves the old or the new journal, whole.
    Takes the journal's lock: refused while a run uses it.
    """
    lock_fd = _lock(path)
    try:
        kept: list[bytes] = []
        dropped: list[tuple[int, str]] = []
        for number, _end, raw, complete in _lines(path):
            line = raw.lstrip(b"\x00")
            try:
                rec = orjson.loads(line) if complete else None
            except orjson.JSONDecodeError:
                rec = None
            if number == 1:
                try:
                    Header.from_record(rec, path)
                except JournalCorrupt:
                    raise JournalCorrupt(
                        "the header is damaged, so the run this journal belongs to is unknown "
                        "and it cannot be repaired; move it aside to start over",
                        path=str(path),
                        line=1,
                    ) from None
            if isinstance(rec, dict):
                kept.append(line + b"\n")
            elif line.strip(b"\x00\r\n\t "):
                dropped.append((number, "unreadable record" if complete else "torn record"))
            else:
                dropped.append((number, "blank line"))
        if not kept:
            raise JournalCorrupt("journal is empty or its header is torn", path=str(path), line=1)
        if not dropped or dry_run:
            return Repair(len(kept) - 1, tuple(dropped), None)
        backup = path.with_name(path.name + ".damaged")
        n = 0
        while backup.exists():
            n += 1
            backup = path.with_name(f"{path.name}.damaged.{n}")
        shutil.copyfile(path, backup)
        tmp = path.with_name(path.name + ".repair")
        with tmp.open("wb") as out:
            out.writelines(kept)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        _fsync_dir(path)
        return Repair(len(kept) - 1, tuple(dropped), backup)
    finally:
        os.close(lock_fd)


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
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock_fd = _lock(path)
        except OSError as exc:
            raise JournalError(f"cannot open {path}: {_io_reason(exc)}") from exc
        try:
            if path.exists() and path.stat().st_size > 0:
                state = replay(path, fingerprints=True)
                _check_binding(path, state.header, header, force)
                if state.torn_tail:
                    with path.open("r+b") as fh:
                        fh.truncate(state.good_bytes)
                        fh.flush()
                        os.fsync(fh.fileno())
                keys = len(state.done) + len(state.pending)
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
                _fsync_dir(path)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            # A full disk (or a file size limit) while creating or repairing the
            # journal: a clear error before any work, not a traceback.
            os.close(lock_fd)
            raise JournalError(f"cannot write {path}: {_io_reason(exc)}") from exc
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(path, fd, lock_fd, sync_interval), state

    # -- writing -----------------------------------------------------------

    def record(self, rec: Record) -> None:
        """Append one record; it reaches the OS at the end of this loop turn."""
        if self.error is not None:
            raise self.error
        if self._closed:
            raise JournalError(f"{self.path} is closed")
        self._buf += orjson.dumps(rec)
        self._buf += b"\n"
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
        os.close(self._lock_fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_binding(path: Path, found: Header, wanted: Header, force: bool) -> None:
    if force:
        return
    problems = []
    if found.provider != wanted.provider:
        problems.append(f"provider {found.provider!r}, not {wanted.provider!r}")
    if found.manifest != wanted.manifest:
        problems.append(f"manifest {found.manifest}, not {wanted.manifest}")
    for key, value in wanted.bind.items():
        if key in found.bind and found.bind[key] != value:
            problems.append(f"{key} {found.bind[key]!r}, not {value!r}")
    if problems:
        raise JournalMismatch(
            f"{path} belongs to another run ({'; '.join(problems)}); "
            "use another --journal, or --force to reuse it"
        )
