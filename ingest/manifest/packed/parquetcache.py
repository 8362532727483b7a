"""A Parquet row's image bytes read again: the reader's batches cached, an upload-side cursor for the rest.

Owns `row_bytes` (the image bytes of the row a `Member` names), the cache of
batches (`remember`; keyed by path, size, mtime, row group and the batch's
first row) of at most `CACHE_BYTES` of images (`LARGE_CACHE_BYTES` of rows
too large to be read ahead) and `CACHE_ROWS` rows, and the cursors.

How it works: a row's bytes are not a byte range of the file (pages are
encoded and compressed), so an item names its (row group, row) and
`row_bytes` finds them in the cache, which the reader fills as it reads:
it hands out the cached object itself, so a small image's read-ahead bytes
(`Source.body`, `ingest.prefetch`: read by validation right after the
reader yields the row) are the cache's, not a second copy, and the cache
need only bridge the reader and validation, plus the rows read at upload
(those past the read-ahead's budget). A row the cache no longer holds is
read by an upload-side cursor, a second read of its row group
(`parquetfile.group_batches`, streamed or by pyarrow as the reader did)
that moves forward as the uploads do (they come in file order, a little
jittered: the batches it passes between two rows asked for are kept). A row
behind the cursor and no longer cached (a retry, a re-sign long after)
starts a new cursor at its row group: read again, never lost.

Invariants: the cache keeps at least the two batches last used, however
large; at most `_CURSORS` files have a cursor (each an open file); a row the
file no longer has, or with another length, is an `OSError` saying the file
changed.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import ManifestError
from ingest.item import Member
from ingest.manifest.packed.parquetfile import GroupDamaged, Rows, group_batches, layout, open_file

# Images the cache keeps of rows the read-ahead carries (`remember`): a triage batch's rows
# (`held.HELD_BYTES`) and the reader's batches either side of them (2 x `BATCH_BYTES`), whole
CACHE_BYTES = 12 << 20
LARGE_CACHE_BYTES = 16 << 20  # and of larger rows, which uploads read from here
READ_AHEAD_MAX = 256 << 10  # `ingest.prefetch.Prefetch.max_file`: a larger row is not read ahead
CACHE_ROWS = 1024  # and rows: the in-flight window (read batch + 2 x put_concurrency + lookahead)
_CURSORS = 2  # files with an upload-side cursor open

Ident = tuple[str, int, int]  # path, size, mtime: a rewritten file is another file
BatchKey = tuple[Ident, int, int]  # the file, the row group, the batch's first row in it
_batches: OrderedDict[BatchKey, Rows] = OrderedDict()  # the reader's and the cursors' batches
_totals = [0, 0]  # their images' bytes (at most `CACHE_BYTES`, or two batches) and rows
_lock = threading.Lock()  # the cache
_cursors: OrderedDict[Ident, _Cursor] = OrderedDict()
_cursors_lock = threading.Lock()  # one cursor moves at a time (misses are the rare case)


def ident_of(path: Path | str) -> Ident:
    st = os.stat(path)
    return (str(path), st.st_size, st.st_mtime_ns)


def remember(key: BatchKey, values: Rows) -> None:
    """Cache a batch's images; the oldest go past `CACHE_BYTES` (`LARGE_CACHE_BYTES` for a batch
    of rows too large to be read ahead: each upload reads its row from here, and a miss reads
    the row group again) or `CACHE_ROWS` (the last two always stay)."""
    with _lock:
        if key in _batches:
            _batches.move_to_end(key)
            return
        _batches[key] = values
        size = _size(values)
        _totals[0] += size
        _totals[1] += len(values)
        large = size > READ_AHEAD_MAX * len(values)
        limit = LARGE_CACHE_BYTES if large else CACHE_BYTES
        while (_totals[0] > limit or _totals[1] > CACHE_ROWS) and len(_batches) > 2:
            gone = _batches.popitem(last=False)[1]
            _totals[0] -= _size(gone)
            _totals[1] -= len(gone)


def clear() -> None:
    """Forget every cached batch and cursor (tests)."""
    with _cursors_lock, _lock:
        _batches.clear()
        _totals[:] = [0, 0]
        while _cursors:
            _cursors.popitem()[1].close()


def _size(values: Rows) -> int:
    return sum(len(v) for v in values if isinstance(v, bytes))


def _cached(ident: Ident, group: int, row: int) -> tuple[Rows, int] | None:
    """The cached batch holding `row` (of row group `group`) and its index there, or None."""
    with _lock:
        for key, values in reversed(_batches.items()):
            file, at, first = key
            if file == ident and at == group and first <= row < first + len(values):
                _batches.move_to_end(key)
                return values, row - first
    return None


@dataclass(slots=True)
class _Cursor:
    """An upload-side reader of one row group's image column, moving forward."""

    group: int
    batches: Iterator[tuple[int, Rows]]
    fd: int  # the file, open while the cursor is
    next_row: int = 0  # of the next batch
    wanted: int = 0  # the row last asked for: batches before it are passed over, not kept
    # (a forward move keeps those between two rows asked for: other uploads of the window)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _new_cursor(path: Path, group: int, row: int) -> _Cursor:
    where = str(path)
    pf = open_file(where, where)
    lay = layout(pf, where)
    if group >= pf.num_row_groups:
        raise IndexError(group)
    fd = os.open(where, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    return _Cursor(group, group_batches(pf, lay, group, fd), fd, wanted=row)


def _from_cursor(path: Path, ident: Ident, group: int, row: int) -> tuple[Rows, int]:
    """`row`'s value read by the file's cursor (a new one if it is past the row or elsewhere)."""
    with _cursors_lock:
        found = _cached(ident, group, row)  # another thread's move may have read it
        if found is not None:
            return found
        cursor = _cursors.get(ident)
        if cursor is None or cursor.group != group or cursor.next_row > row:
            if cursor is not None:
                cursor.close()
            cursor = _new_cursor(path, group, row)
            _cursors[ident] = cursor
            while len(_cursors) > _CURSORS:
                _cursors.popitem(last=False)[1].close()
        _cursors.move_to_end(ident)
        for first, values in cursor.batches:
            cursor.next_row = first + len(values)
            if cursor.next_row > cursor.wanted:  # passed over: kept if the uploads are there
                remember((ident, group, first), values)
            if row < cursor.next_row:
                cursor.wanted = row
                return values, row - first
        raise IndexError(row)


def row_bytes(path: Path, member: Member) -> bytes:
    """The image bytes of the Parquet row `member` names (the cached object itself, not a
    copy); `OSError` if they are not there."""
    assert member.row is not None
    group, row = member.row
    where = f"{path}#{member.name}"
    try:
        ident = ident_of(path)
        values, index = _cached(ident, group, row) or _from_cursor(path, ident, group, row)
    except (IndexError, ValueError) as exc:
        raise OSError(f"the Parquet file changed: no row {row} in group {group}: {where}") from exc
    except ManifestError as exc:
        raise OSError(f"{exc.reason}: {where}") from None
    except GroupDamaged as exc:
        _drop_cursor(ident_of(path))
        raise OSError(f"damaged row group {group} ({exc.reason}): {where}") from None
    data = values[index]
    if not isinstance(data, bytes):
        raise OSError(f"row holds no image bytes it can read: {where}")
    if len(data) != member.length:
        raise OSError(
            f"the Parquet file changed: row of {len(data)} bytes, not {member.length}: {where}"
        )
    return data


def _drop_cursor(ident: Ident) -> None:
    with _cursors_lock:
        cursor = _cursors.pop(ident, None)
        if cursor is not None:
            cursor.close()
