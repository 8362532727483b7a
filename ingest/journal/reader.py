"""Reading a journal back: `replay` (the state it describes) and `peek_header`.

Owns the line reader every pass over a journal shares, the `Replay` state,
and the key digests and file fingerprints a replay keeps.

How it works: the journal is read in 256 KiB blocks of whole lines; the
header (line 1) starts a `Replay`, sized for the items a journal of that
many bytes holds, and each block is taken into it by `scan.take_block`
(a run's acq + done pairs in C, the rest validated as `records.problem`
does and applied; see scan.py for why that is the line-by-line state). A
replay of 10^6 items reads 2·10^6 lines. Line numbers and byte offsets are
counted per block, so a bad line is named without tracking each line.

Invariants:
- Only the last line may be torn (or unreadable): it is noted (`torn_tail`)
  and `good_bytes` says where the intact part ends. A bad line anywhere else
  is `JournalCorrupt` naming its line, never silently dropped.
- A path that cannot be a journal (a folder, a path under a file, unreadable)
  is a one-line `JournalError`, never an `OSError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from io import BufferedReader
from pathlib import Path
from typing import Any

import orjson

from ingest.digestset import DigestSet, digest64
from ingest.errors import JournalCorrupt, JournalError
from ingest.journal.header import Header, bad_header
from ingest.journal.records import Record, Unfinished, count_of, problem
from ingest.journal.scan import fingerprint as fingerprint  # its home before scan.py
from ingest.journal.scan import take_block

_BLOCK = 1 << 18  # 256 KiB: as fast as larger blocks, and the split list stays small
_MASK64 = (1 << 64) - 1
_BYTES_PER_ITEM = 116  # a run's acq + done records of one item (benchmarks/scale.py)


def key_digest(key: str) -> int:
    """A 64-bit digest of an item key: what replay keeps for done items."""
    return digest64(key)


@dataclass(slots=True)
class Replay:
    """The state a journal describes, kept compact enough for 10^6 items.

    Done items are kept as 64-bit digests in a `DigestSet` (~17 bytes each);
    with `fingerprints` (a resume checks for changed files; `status` and the
    end-of-run summary need not), each with its file's size/mtime fingerprint
    in the same table (~34 bytes each). Every other item's last record is kept
    whole in `unfinished` (few of them: in flight, failed, rejected).

    `gone` is what the latest full read (`end` record) found missing: items
    of earlier runs the manifest no longer listed, by the state they were in.
    `counts` leaves them out, so the counts are those of the manifest as of
    that read and never exceed `total`; `removed` is how many of them were
    uploaded.
    """

    header: Header
    fingerprints: bool = False
    done: DigestSet = field(default_factory=DigestSet)
    unfinished: dict[str, Unfinished] = field(default_factory=dict)
    bad_lines: int = 0  # rejected manifest lines without a key, in the latest run
    total: int | None = None
    gone: dict[str, int] = field(default_factory=dict)
    read_to_end: bool = False  # the latest run read its manifest to the end
    manifest_id: str | None = None  # the manifest file that read began with (`end` "mi")
    changed: int = 0  # done items that read found changed since upload, kept (`end` "ch")
    runs: int = 0
    records: int = 0
    good_bytes: int = 0  # offset of the end of the last complete record
    torn_tail: bool = False

    def __post_init__(self) -> None:
        if self.fingerprints and not self.done.has_values:
            self.done = DigestSet(values=True)

    def apply(self, rec: Record) -> None:
        if rec["s"] == "done":
            key = rec["k"]
            digest = (hash(key) & _MASK64) or 1  # `key_digest`, inlined: 2·10^6 calls a replay
            if self.fingerprints:
                self.done.add(digest, fingerprint(rec["z"], rec["m"]))
            else:
                self.done.add(digest)
            self.unfinished.pop(key, None)
        elif rec["s"] == "run":
            self.runs += 1
            self.bad_lines = 0
            self.read_to_end = False
        elif rec["s"] == "end":
            self.total = rec["n"]
            self.gone = rec.get("gone", {})
            self.manifest_id = rec.get("mi")
            self.changed = rec.get("ch", 0)
            self.read_to_end = True
        elif "k" in rec:
            key = rec["k"]
            self.unfinished[key] = rec
            self.done.discard((hash(key) & _MASK64) or 1)
        else:  # a rejected manifest line without a key
            self.bad_lines += 1

    def take(self, rec: Any) -> str | None:
        """Apply one parsed line if it is a valid record; else why not (`records.problem`).

        One line at a time, for a caller that has one; `replay` takes whole
        blocks (`scan.take_block`: the common shapes in one step each), and
        comes here for the rest.
        """
        why = problem(rec)
        if why is None:
            self.apply(rec)
        return why

    def is_done(self, key: str) -> bool:
        return key_digest(key) in self.done

    def fingerprint_of(self, key: str) -> int | None:
        """The size/mtime fingerprint recorded when `key` was done (needs `fingerprints=True`)."""
        return self.done.get(key_digest(key)) if self.fingerprints else None

    def counts(self) -> dict[str, int]:
        """Item counts by state (each a `Count`), without the items the latest full read lacked."""
        return without_gone(self.all_counts(), self.gone)

    def all_counts(self) -> dict[str, int]:
        """Item counts by state of every key the journal names, whether listed or not."""
        counts: dict[str, int] = {
            "done": len(self.done),
            "failed": 0,
            "rejected": self.bad_lines,
            "in_flight": 0,
        }
        for rec in self.unfinished.values():
            counts[count_of(rec["s"])] += 1
        return counts

    @property
    def removed(self) -> int:
        """Items uploaded earlier that the latest full read no longer listed."""
        return self.gone.get("done", 0)


def without_gone(counts: dict[str, int], gone: Mapping[str, int]) -> dict[str, int]:
    """`counts` less the `gone` ones (never below 0: a gone key may have moved since)."""
    return {name: max(0, n - gone.get(name, 0)) for name, n in counts.items()}


def lines(path: Path) -> Iterator[tuple[int, int, bytes, bool]]:
    """(line number, end offset, line without its newline, complete) for every line.

    Read in `_BLOCK`s (a replay of 10^6 items reads 2·10^6 lines); only the
    last line can be incomplete (no newline: a torn write).
    """
    number = offset = 0
    carry = b""
    with _open(path) as fh:
        while block := fh.read(_BLOCK):
            split = (carry + block).split(b"\n") if carry else block.split(b"\n")
            carry = split.pop()
            for line in split:
                number += 1
                offset += len(line) + 1
                yield number, offset, line, True
    if carry:
        yield number + 1, offset + len(carry), carry, False


def replay(path: Path, *, fingerprints: bool = False) -> Replay:
    """Read a journal; a torn last line is noted, damage elsewhere raises.

    `fingerprints` also keeps each done item's size/mtime fingerprint (for a
    resume's changed-file check; ~100 bytes an item more). A path that is not
    a readable journal (missing, a folder) is `JournalError`.
    """
    result: Replay | None = None
    pending: tuple[int, str] | None = None  # a bad line: only the last line may be one
    number = offset = good_bytes = records = 0  # lines and bytes read, the intact part
    carry = b""
    with _open(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        while block := fh.read(_BLOCK):
            buf = carry + block if carry else block
            cut = buf.rfind(b"\n")
            if cut < 0:  # a line longer than a block
                carry = buf
                continue
            body, carry = buf[:cut], buf[cut + 1 :]
            if pending is not None:  # a bad line followed by more lines: damage in the middle
                raise _damaged(path, pending)
            if result is None:
                head, more, body = body.partition(b"\n")
                result = _started(path, head, fingerprints, size)
                number = 1
                offset = good_bytes = len(head) + 1
                if not more:
                    continue
            count, taken, why = take_block(result, body)
            records += taken
            if why is None:
                good_bytes = offset + len(body) + 1
            elif taken == count - 1:  # the block's last line: the file's, if nothing follows
                pending = (number + taken + 1, why)
                good_bytes = offset + body.rfind(b"\n") + 1 if taken else good_bytes
            else:
                raise _damaged(path, (number + taken + 1, why))
            number += count
            offset += len(body) + 1
    if carry:  # no newline at the end: a torn write
        if pending is not None:
            raise _damaged(path, pending)
        pending = (number + 1, "torn record")
    if result is None:
        raise JournalCorrupt("journal is empty or its header is torn", path=str(path), line=1)
    for key in result.unfinished:  # `take_block` leaves an acquired key's digest in `done`
        result.done.discard((hash(key) & _MASK64) or 1)
    result.records, result.good_bytes = records, good_bytes
    result.torn_tail = pending is not None
    return result


def _started(path: Path, head: bytes, fingerprints: bool, size: int) -> Replay:
    """The empty `Replay` of a journal whose first line is `head` (`size` bytes in all)."""
    try:
        rec = orjson.loads(head)
    except orjson.JSONDecodeError:
        rec = None
    if not isinstance(rec, dict):
        raise bad_header(path)
    # Sized for the keys a journal of `size` bytes holds when written as a run writes it
    # (acq + done, ~116 bytes an item), so the table is not grown (rehashed) 9 times.
    done = DigestSet(size // _BYTES_PER_ITEM * 10 // 7 + 1, values=fingerprints)
    return Replay(header=Header.from_record(rec, path), fingerprints=fingerprints, done=done)


def _damaged(path: Path, bad: tuple[int, str]) -> JournalCorrupt:
    return JournalCorrupt(
        f"{bad[1]}, with more records after it; run `ingest repair {path}` "
        "to keep every intact record (the items whose records are lost are redone)",
        path=str(path),
        line=bad[0],
    )


def peek_header(path: Path) -> Header | None:
    """The header of an existing journal, or None when there is none yet.

    A path that cannot hold a journal (a folder, under a file) is `JournalError`.
    """
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise not_a_journal(path, exc) from None
    with fh:
        first = fh.readline()
    if not first.endswith(b"\n"):
        return None
    try:
        return Header.from_record(orjson.loads(first), path)
    except (orjson.JSONDecodeError, JournalCorrupt):
        return None


def _open(path: Path) -> BufferedReader:
    """`path` opened for reading; any `OSError` becomes a one-line `JournalError`."""
    try:
        return path.open("rb")
    except OSError as exc:
        raise not_a_journal(path, exc) from None


def not_a_journal(path: Path, exc: OSError) -> JournalError:
    """The one-line error for a path that cannot be read (or created) as a journal."""
    if isinstance(exc, IsADirectoryError) or path.is_dir():
        folder = path / ".ingest"
        found = sorted(str(p) for p in folder.glob("*.journal")) if folder.is_dir() else []
        if len(found) == 1:
            return JournalError(f"{path} is a folder, not a journal: use its journal, {found[0]}")
        if found:
            return JournalError(
                f"{path} is a folder, not a journal: use one of its journals, {', '.join(found)}"
            )
        return JournalError(
            f"{path} is a folder, not a journal, and it has none yet "
            f"(a run on the folder writes {folder}/PROVIDER.journal)"
        )
    if isinstance(exc, FileNotFoundError):
        return JournalError(f"no journal at {path}")
    if isinstance(exc, NotADirectoryError | FileExistsError):
        return JournalError(f"{path} cannot be a journal: a folder in its path is a file")
    return JournalError(f"cannot read {path}: {exc.strerror or exc}")
