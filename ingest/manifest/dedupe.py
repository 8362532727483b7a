"""Duplicate keys across a whole manifest: one streaming pass, and a second for held entries.

Owns the rule "a key seen on an earlier line is a duplicate, named with that
line" as the readers apply it: each reader asks a `KeyCheck` about every key
(`seenkeys` holds the memory: exact, in about two bytes a key), answers a
duplicate at once, and yields a `Held` entry when the filter cannot tell.

How it works: `deduplicated` runs a reader once with `SeenKeys` and passes
every settled entry straight on; it keeps only the line and key digest of each
held entry. Once the manifest has been read to its end, it runs the reader
again with `FirstLines`, which notes the first line of every held key, and
settles each held entry: a duplicate naming that line, or (a false alarm of
the filter) the item itself.

Invariants: held entries come after all others, in manifest order (so the
whole stream is in line order only when nothing was held, and which entries
are held depends on the process's hash seed: whoever needs line order or a
digest of the entries must not rely on the read order), but for an `ordered`
read (`_in_order`: the listings of `export` and `status --failed`), which
gives each in its place in the same passes; a held entry that
cannot be settled (the file changed or vanished in between) is an error to
retry (`Unsettled`), never an upload, so no key is uploaded twice.

A reader given the duplicates already found (`seenkeys.KnownDuplicates`, a
coordinated run's plan) makes one pass instead, in line order, holding nothing.

Also owns "one file, one item" (`one_per_file`): entries keyed by their path
whose paths name the same file (``img/a.png``, ``./img/a.png``,
``/abs/img/a.png``, a symlink and its target, a hard link) are one item: the
first; each later one is an error naming that line. It is judged by the
file's (st_dev, st_ino) from one ``stat`` per entry, kept in a `DigestSet`
(about 23 bytes a file); that stat travels on as `Item.stat`, so `validate`
does not take another. Entries with an ``id`` of their own are left alone:
two ids for one file are two items on purpose (one picture, two captions).
"""

from __future__ import annotations

import contextlib
import os
from array import array
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.digestset import DigestSet, digest64
from ingest.errors import ManifestError
from ingest.item import Item
from ingest.manifest.lines import clip
from ingest.manifest.seenkeys import FirstLines, KeyCheck, KnownDuplicates, SeenKeys


@dataclass(frozen=True, slots=True)
class Held:
    """An entry whose key may have been seen before: decided after the whole manifest is read."""

    item: Item
    what: str  # "id" or "path": what the key is, for the message


Entry = Item | ManifestError | Held
"""What a reader yields for one manifest entry."""

Reader = Callable[[KeyCheck], Generator[Entry, None, None]]
"""A manifest read from the start, checking its keys against the `KeyCheck` given."""


class DuplicateKey(ManifestError):
    """A key seen on an earlier line: `first` is that line (0: not known)."""

    def __init__(
        self, reason: str, *, source: str, line: int, first: int, what: str = "path"
    ) -> None:
        super().__init__(reason, source=source, line=line)
        self.first = first
        self.what = what  # "path" or "id": what the key is


class Unsettled(ManifestError):
    """A held entry the second pass could not settle: neither uploaded nor called a duplicate."""


def duplicate(key: str, what: str, first: int, source: str, line: int) -> DuplicateKey:
    where = f"first at line {first}" if first else "also on an earlier line"
    reason = f"duplicate {what} {clip(key, 80)!r} ({where})"
    return DuplicateKey(reason, source=source, line=line, first=first, what=what)


def estimate_entries(path: Path) -> int:
    """Roughly how many lines the manifest has, from its size and its first MiB."""
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 20)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return 0
    return size * max(1, head.count(b"\n")) // max(1, len(head))


def deduplicated(
    read: Reader,
    path: Path,
    source: str,
    expected: int,
    known: KnownDuplicates | None = None,
    *,
    ordered: bool = False,
) -> Generator[Item | ManifestError, None, None]:
    """The reader's entries with duplicate keys turned into errors (see `seenkeys`).

    With `known` (the duplicates a whole read found before), one pass in line order.
    `ordered`: in line order without `known`, in the same passes (`_in_order`)."""
    if known is not None:
        with contextlib.closing(read(known)) as entries:
            for entry in entries:
                if isinstance(entry, Held):  # `KnownDuplicates` never holds
                    raise AssertionError("a known duplicate check held an entry")
                yield entry
        return
    if ordered:
        yield from _in_order(read, path, source, expected)
        return
    before = _identity(path)
    held_lines, held_digests = array("Q"), DigestSet()
    for entry in read(SeenKeys(expected)):
        if isinstance(entry, Held):
            held_lines.append(entry.item.line)
            held_digests.add(digest64(entry.item.key))
        else:
            yield entry
    if not held_lines:
        return
    first = FirstLines(held_lines, held_digests)
    if _identity(path) != before:
        reason = "the manifest changed while it was read"
        yield from _held_unsettled(held_lines, 0, source, reason)
        return
    try:
        with contextlib.closing(read(first)) as again:
            for entry in again:
                if isinstance(entry, Held):
                    yield _settled(entry, first, source)
                    if first.seen == len(held_lines):
                        return
    except ManifestError as exc:
        yield from _held_unsettled(held_lines, first.seen, source, exc.reason)
        return
    # Held lines the second pass did not meet again: the file changed under us.
    yield from _held_unsettled(held_lines, first.seen, source, "the line is gone")


def _settled(entry: Held, first: FirstLines, source: str) -> Item | ManifestError:
    """A held entry met again by the second pass: a duplicate of its key's first line, or
    (a false alarm of the filter) the item itself."""
    item = entry.item
    line = first.lines.get(digest64(item.key)) or item.line
    return duplicate(item.key, entry.what, line, source, item.line) if line < item.line else item


def _in_order(
    read: Reader, path: Path, source: str, expected: int
) -> Generator[Item | ManifestError, None, None]:
    """`deduplicated` in line order: the first pass's entries up to its first held one (line
    H); the rest come from the second pass, which reads every line again anyway (it notes
    each held key's first line), each held entry settled where it stands, since its key's
    first line is at or before it. Kept between the passes: what `deduplicated` keeps, and
    the duplicates past H the first pass told at once (real duplicates only), 17 bytes each."""
    before = _identity(path)
    held_lines, held_digests = array("Q"), DigestSet()
    # Past H, a duplicate the first pass named at once: its line, first line and what (an id
    # or not), 17 bytes; not its message (a captions file lists a key once a caption).
    told_lines, told_firsts, told_ids, told_next = array("Q"), array("Q"), bytearray(), 0
    last, at_h = None, 0  # the line last yielded, and its entries yielded (of line H: skipped)
    for entry in read(SeenKeys(expected)):
        if isinstance(entry, Held):
            if not held_lines and last != entry.item.line:
                at_h = 0
            held_lines.append(entry.item.line)
            held_digests.add(digest64(entry.item.key))
        elif not held_lines:
            yield entry
            at_h, last = (at_h + 1 if entry.line == last else 1), entry.line
        elif isinstance(entry, DuplicateKey):
            told_lines.append(entry.line or 0)
            told_firsts.append(entry.first)
            told_ids.append(entry.what == "id")
    if not held_lines:
        return
    h = held_lines[0]
    first = FirstLines(held_lines, held_digests)
    if _identity(path) != before:
        reason = "the manifest changed while it was read"
        yield from _held_unsettled(held_lines, 0, source, reason)
        return
    past = False  # the second pass is at line H or after it
    try:
        with contextlib.closing(read(first)) as again:
            for entry in again:
                line = entry.item.line if isinstance(entry, Held) else entry.line
                if (line is not None and line < h) or (not past and line is None):
                    continue
                past = True
                if isinstance(entry, Held):
                    yield _settled(entry, first, source)
                elif line == h and at_h:
                    at_h -= 1  # yielded by the first pass
                elif isinstance(entry, Item) and (told := _told(told_lines, told_next, line)):
                    told_next = told
                    what = "id" if told_ids[told - 1] else "path"
                    yield duplicate(entry.key, what, told_firsts[told - 1], source, entry.line)
                else:
                    yield entry
    except ManifestError as exc:
        yield from _held_unsettled(held_lines, first.seen, source, exc.reason)
        return
    yield from _held_unsettled(held_lines, first.seen, source, "the line is gone")


def _told(lines: array[int], at: int, line: int | None) -> int:
    """Past the `lines` entry for `line` (a told duplicate's) from `at` on, or 0 if none is."""
    while at < len(lines) and lines[at] < (line or 0):
        at += 1
    return at + 1 if at < len(lines) and lines[at] == line else 0


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _held_unsettled(
    held_lines: array[int], start: int, source: str, why: str
) -> Iterator[ManifestError]:
    """Errors for held entries that could not be settled: retried by the next run."""
    for line in held_lines[start:]:
        yield Unsettled(
            f"could not check this line for a duplicate key ({why}); "
            "run the same command again to upload it",
            source=source,
            line=line,
        )


def one_per_file(
    entries: Iterable[Item | ManifestError], source: str, *, by_path: Callable[[Item], bool]
) -> Generator[Item | ManifestError, None, None]:
    """`entries` with every later entry naming an earlier entry's file made an error.

    Only items for which `by_path` holds (keyed by the path they were listed
    with) take part. A file that cannot be stat'ed passes on unchanged: its
    check (`validate`) names the problem.
    """
    firsts = DigestSet(values=True)
    try:
        for entry in entries:
            # A shard's members share its file: they are told apart by member name.
            if isinstance(entry, Item) and entry.member is None and by_path(entry):
                try:
                    st = os.stat(entry.path)
                except (OSError, ValueError):
                    yield entry
                    continue
                # Handed on for `validate` (one stat an entry, not two). The item is
                # still the reader's own: nothing downstream has seen it yet.
                object.__setattr__(entry, "stat", st)
                if st.st_ino:  # 0: a file system without inode numbers; nothing to go by
                    identity = _file_digest(st.st_dev, st.st_ino)
                    first = firsts.get(identity)
                    if first is not None:
                        yield _same_file(first, source, entry.line)
                        continue
                    firsts.add(identity, entry.line)
            yield entry
    finally:
        if isinstance(entries, Generator):
            entries.close()


def _file_digest(dev: int, ino: int) -> int:
    # Well mixed (tuple hashing): sequential inode numbers must not fill one run of
    # the table's linear probing.
    return hash((dev, ino)) & 0xFFFF_FFFF_FFFF_FFFF or 1


def _same_file(first: int, source: str, line: int) -> ManifestError:
    return ManifestError(
        f"same file as line {first} (another spelling of its path, or a link to it): "
        f"not uploaded twice, line {first} uploads it",
        source=source,
        line=line,
    )
