"""Reading a member's bytes where they lie in its shard: a range, or a decompressed stream.

Owns the one way every reader (validation, the PUT, Scenario's bodies) gets at
a member's bytes: `open_member` gives a file-like that reads exactly the
member (from a start offset), `read_member` reads up to n bytes of it. A tar
member or a stored zip member is a plain range of the shard (``pread``, no
copy beyond the bytes asked for); a compressed zip member is decompressed as
it is read (`zipfile`, whose CRC check fails a damaged member at its end),
never unpacked to disk or held whole; a Parquet row's bytes come from its
row group, read and cached by `parquet.row_bytes`.

Invariants: a member never reads past its own bytes; a short read (the shard
shrank, a member cut off) is an `OSError` naming ``shard#member``, as a file
that changed under a reader is; a compressed member's bytes come through the
`zipfile.ZipFile` of its shard kept open per shard (a small cache, keyed by
path, size and mtime, so a rewritten shard is opened again).
"""

from __future__ import annotations

import io
import os
import threading
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

from ingest.item import Member

_KEEP = 4  # zip shards kept open
_zips: OrderedDict[tuple[str, int, int], zipfile.ZipFile] = OrderedDict()
_lock = threading.RLock()  # ZipFile.open counts its readers unlocked: opened under it


class _Range(io.RawIOBase):
    """`length` bytes of an open file from `offset`, read with pread (no shared position)."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self._fd, self._at, self._left = fd, offset, length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._left)
        if want <= 0:
            return 0
        data = os.pread(self._fd, want, self._at)
        buffer[: len(data)] = data
        self._at += len(data)
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


class _Decompressed(io.RawIOBase):
    """A compressed zip member as it decompresses; damage is an `OSError` naming the member."""

    def __init__(self, stream: BinaryIO, where: str) -> None:
        self._stream, self._where = stream, where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            data = self._stream.read(len(buffer))
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            raise OSError(f"damaged member ({exc}): {self._where}") from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
        super().close()


def _archive(path: Path) -> zipfile.ZipFile:
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _lock:
        archive = _zips.get(key)
        if archive is not None:
            _zips.move_to_end(key)
            return archive
        archive = zipfile.ZipFile(path)
        _zips[key] = archive
        while len(_zips) > _KEEP:
            _zips.popitem(last=False)[1].close()
        return archive


def open_member(path: Path, member: Member, start: int = 0) -> BinaryIO:
    """A reader of `member`'s bytes from `start` (its own offset, not the shard's)."""
    if member.stored:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        return io.BufferedReader(_Range(fd, member.offset + start, member.length - start))
    if member.row is not None:  # a Parquet row: its row group is read (and cached)
        from ingest.manifest.packed.parquet import row_bytes

        return io.BytesIO(row_bytes(path, member)[start:])
    where = f"{path}#{member.name}"
    try:
        with _lock:
            raw = _archive(path).open(member.name)
    except (zipfile.BadZipFile, KeyError, NotImplementedError) as exc:
        raise OSError(f"cannot open member ({exc}): {where}") from None
    stream = io.BufferedReader(_Decompressed(raw, where))  # type: ignore[arg-type]
    try:
        _skip(stream, start)
    except BaseException:
        stream.close()
        raise
    return stream


def read_member(path: Path, member: Member, n: int, start: int = 0) -> bytes:
    """Up to `n` bytes of `member` from `start`; `OSError` if it has fewer than it should."""
    want = min(n, member.length - start)
    with open_member(path, member, start) as fh:
        data = _read_exactly(fh, want)
    if len(data) < want:
        raise OSError(
            f"member ended early: {start + len(data)} of {member.length} bytes: {path}#{member.name}"
        )
    return data


def _read_exactly(fh: BinaryIO, n: int) -> bytes:
    chunks, left = [], n
    while left > 0 and (chunk := fh.read(left)):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _skip(stream: BinaryIO, n: int) -> None:
    while n > 0:
        chunk = stream.read(min(n, 1 << 20))
        if not chunk:
            return
        n -= len(chunk)
