"""Keeping a journal usable: the run lock, the binding check, compaction, repair.

Owns every rewrite of a journal file, the one-run-at-a-time lock, and the
rule of which run may use a journal (`check_binding`).

How it works: a rewrite (`compact`, `repair`, `rebind`) goes to a temporary file beside
the journal, is fsynced, renamed over the original and the folder fsynced, so
a crash during it leaves the old or the new journal, whole. The lock is an
exclusive `flock` on ``<journal>.lock`` holding the owner's pid; the file is
removed by its holder on release (`unlock`), so none is left beside the journal.

Invariants:
- `compact` keeps the state a replay gives; `repair` keeps every intact
  record, in order, and copies the original aside first.
- A journal bound to another provider, endpoint or run-level value (a model
  or order id, Scenario's mode and preset) is refused (`JournalMismatch`),
  forced or not: its records say where items went, and would be false for
  the new run. `force` overrides only the manifest path (a manifest moved or
  renamed), and the header is then rewritten to the new path (`rebind`).
- A field the journal does not record (written by an older version) is
  unknown, not a difference: `unrecorded` names it for the caller to say so.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

from ingest.digestset import DigestSet
from ingest.errors import JournalCorrupt, JournalLocked, JournalMismatch
from ingest.journal.header import EMULATOR, Header
from ingest.journal.reader import key_digest, lines, not_a_journal
from ingest.journal.records import decode, problem


def fsync_dir(path: Path) -> None:
    """Fsync the folder holding `path` (so a rename in it is durable)."""
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def lock(path: Path) -> int:
    """Take the journal's run lock; its fd (release it with `unlock`). `JournalLocked` if held.

    The lock file exists only while a run holds it: `unlock` removes it before
    letting go. So a lock taken on a file that its holder removed meanwhile
    (opened before the removal, locked after) guards nothing: the lock is
    kept only when the file at the path is the one locked, else taken again.
    """
    lock_path = _lock_path(path)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise JournalLocked(
                f"{path} is in use by another ingest run (pid {holder}); wait for it or stop it"
            ) from None
        if _is_at(fd, lock_path):
            break
        os.close(fd)  # a released (removed) lock file: lock the one at the path now
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:  # a full disk: the lock file is not left behind (nor its fd open)
        unlock(path, fd)
        raise
    return fd


def unlock(path: Path, fd: int) -> None:
    """Release the run lock `lock` returned: remove its file while still holding it, then close."""
    lock_path = _lock_path(path)
    try:
        if _is_at(fd, lock_path):
            lock_path.unlink()
    except OSError:
        pass  # a read-only folder: the file stays, and the next run takes it as before
    finally:
        os.close(fd)


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is the file at `path` now."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def check_binding(path: Path, found: Header, wanted: Header, force: bool) -> Header:
    """The header to keep for a run bound as `wanted` on a journal bound as `found`.

    Any difference of provider, endpoint or `bind` value is a `JournalMismatch`
    whatever `force` says; a different manifest is one unless `force`, which
    returns `found` with the new manifest path. A field `found` does not record
    is not compared (see `unrecorded`).
    """
    differs: list[tuple[str, str]] = []  # (what the journal was made with, what this run uses)
    if found.provider != wanted.provider:
        differs.append((f"for provider {found.provider!r}", f"is for {wanted.provider!r}"))
    if found.endpoint is not None and found.endpoint != wanted.endpoint:
        differs.append(
            (
                f"against {describe_endpoint(found.endpoint)}",
                f"targets {describe_endpoint(wanted.endpoint)}",
            )
        )
    changed = [k for k, v in wanted.bind.items() if k in found.bind and found.bind[k] != v]
    for key in changed:
        differs.append((f"with {key} {found.bind[key]!r}", f"uses {key} {wanted.bind[key]!r}"))
    moved = found.manifest != wanted.manifest
    if moved and (differs or not force):
        differs.append((f"for manifest {found.manifest}", f"reads {wanted.manifest}"))
    if not differs:
        return replace(found, manifest=wanted.manifest) if moved else found
    if changed == ["format"] and len(differs) == 1:
        raise format_mismatch(path, found.bind["format"], wanted.bind["format"])
    made, this = zip(*differs, strict=True)
    hint = " (or --force if only the manifest moved)" if moved and len(differs) == 1 else ""
    raise JournalMismatch(
        f"journal {path} was made {', '.join(made)}; this run {', '.join(this)}: "
        f"use another --journal (or journal=) to keep them apart{hint}"
    )


def format_mismatch(path: Path, recorded: str, given: str) -> JournalMismatch:
    """A resume given a --format its journal's runs were not: refused (its every line would
    be read otherwise), as another binding is, saying how to resume it instead."""
    return JournalMismatch(
        f"journal {path} was made with format {recorded!r}; this run uses format {given!r}: "
        f"run without --format (or with --format {recorded}) to resume it, or use another "
        "--journal (or journal=) to keep them apart"
    )


def unrecorded(found: Header, wanted: Header) -> tuple[str, ...]:
    """The binding fields `wanted` has and `found` (an older journal) does not record."""
    missing = ("endpoint",) if found.endpoint is None and wanted.endpoint is not None else ()
    return missing + tuple(key for key in wanted.bind if key not in found.bind)


def describe_endpoint(endpoint: str | None) -> str:
    """A header's endpoint in words ("the built-in emulator", or its URL)."""
    return "the built-in emulator" if endpoint == EMULATOR else str(endpoint)


def rebind(path: Path, header: Header) -> None:
    """Rewrite the journal's header (line 1) as `header`, keeping every record after it."""
    tmp = path.with_name(path.name + ".rebind")
    with path.open("rb") as src, tmp.open("wb") as out:
        src.readline()
        out.write(orjson.dumps(header.to_record()) + b"\n")
        import shutil  # here, as below: with bz2 and lzma ~6 ms of a run's start-up

        shutil.copyfileobj(src, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fsync_dir(path)


def compact(path: Path) -> int:
    """Rewrite the journal with one record per item; returns records dropped.

    Keeps the header, the latest run marker, the last record of every key,
    the unkeyed rejections of the latest run and the latest end marker.
    Written to a temporary file, fsynced, then renamed over the original.
    A torn last line is left out; a malformed record elsewhere is `JournalCorrupt`.
    """
    last = DigestSet(values=True)  # key digest -> its last line: flat at 10^6 keys
    last_run = last_end = count = 0
    for number, _end, line, complete in lines(path):
        count = number
        if number == 1 or not complete:
            continue
        rec = decode(orjson.loads(line), path=path, line=number)
        if rec["s"] == "run":
            last_run = number
        elif rec["s"] == "end":
            last_end = number
        elif "k" in rec:
            last.add(key_digest(rec["k"]), number)
    keep = bytearray(count // 8 + 1)  # a bit per line to keep
    for line_number in itertools.chain((1, last_run, last_end), (n for _, n in last.items())):
        keep[line_number >> 3] |= 1 << (line_number & 7)
    tmp = path.with_name(path.name + ".compact")
    dropped = 0
    with tmp.open("wb") as out:
        for number, _end, line, complete in lines(path):
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
    fsync_dir(path)
    return dropped


@dataclass(frozen=True, slots=True)
class Repair:
    """What `repair` kept and dropped."""

    kept: int  # records kept, the header not counted
    dropped: tuple[tuple[int, str], ...]  # (line number, why) of every line left out
    backup: Path | None  # the original, copied aside before the rewrite (None: not rewritten)


def repair(path: Path, *, dry_run: bool = False) -> Repair:
    """Rewrite a damaged journal keeping every intact record, in order.

    A line is intact when it is one complete, well-formed record (NUL bytes
    before it, which some filesystems leave after a power cut, are ignored).
    The header must be intact: without it the journal's binding is lost, so
    that is a `JournalCorrupt` error. Items whose records are dropped are
    simply redone by the next run. The original is copied to
    ``<journal>.damaged`` (or ``.damaged.N``) first, and the rewrite goes
    through a temporary file and a rename, so a crash during repair leaves the
    old or the new journal, whole. Takes the journal's lock: refused while a
    run uses it.
    """
    if not path.is_file():
        raise not_a_journal(path, FileNotFoundError(errno.ENOENT, str(path)))
    # The header is checked before the lock too, so a file that is no journal gets no `.lock`.
    first = next(lines(path), None)  # the generator, dropped here, closes its file
    if first is None:
        raise JournalCorrupt("journal is empty or its header is torn", path=str(path), line=1)
    _check_header(path, _decoded(first[2].lstrip(b"\x00"), first[3]))
    lock_fd = lock(path)
    try:
        kept: list[bytes] = []
        dropped: list[tuple[int, str]] = []
        for number, _end, raw, complete in lines(path):
            line = raw.lstrip(b"\x00")
            rec = _decoded(line, complete)
            if number == 1:
                _check_header(path, rec)
                kept.append(line + b"\n")
            elif (why := problem(rec)) is None:
                kept.append(line + b"\n")
            elif not line.strip(b"\x00\r\n\t "):
                dropped.append((number, "blank line"))
            else:
                dropped.append((number, why if complete else "torn record"))
        if not kept:
            raise JournalCorrupt("journal is empty or its header is torn", path=str(path), line=1)
        if not dropped or dry_run:
            return Repair(len(kept) - 1, tuple(dropped), None)
        backup = path.with_name(path.name + ".damaged")
        n = 0
        while backup.exists():
            n += 1
            backup = path.with_name(f"{path.name}.damaged.{n}")
        import shutil

        shutil.copyfile(path, backup)
        tmp = path.with_name(path.name + ".repair")
        with tmp.open("wb") as out:
            out.writelines(kept)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        fsync_dir(path)
        return Repair(len(kept) - 1, tuple(dropped), backup)
    finally:
        unlock(path, lock_fd)


def _decoded(line: bytes, complete: bool) -> object:
    try:
        return orjson.loads(line) if complete else None
    except orjson.JSONDecodeError:
        return None


def _check_header(path: Path, rec: object) -> None:
    if isinstance(rec, dict) and "journal" not in rec:  # a manifest given by mistake, say
        raise JournalCorrupt(
            "not an ingest journal (its first line is no journal header); nothing was changed",
            path=str(path),
            line=1,
        )
    try:
        Header.from_record(rec, path)
    except JournalCorrupt:
        raise JournalCorrupt(
            "the header is damaged, so the run this journal belongs to is unknown "
            "and it cannot be repaired; move it aside to start over",
            path=str(path),
            line=1,
        ) from None
