"""Reading a member's bytes where they lie in its shard: a range, or a decompressed stream.

Owns the one way every reader (validation, the PUT, Scenario's bodies) gets at
a member's bytes: `open_member` gives a file-like that reads exactly the
member (from a start offset), `read_member` reads up to n bytes of it. A tar
member or a stored zip member is a plain range of the shard (``pread``, no
copy beyond the bytes asked for); a compressed zip member is decompressed as
it is read from its own range (`zipfile.ZipExtFile` over it, with the
method and CRC-32 its listing found, so every method zipfile knows works and
a damaged member fails its CRC check at its end), never unpacked to disk or
held whole, and without the shard's central directory (a `zipfile.ZipFile`
would read all of it again); a Parquet row's bytes come from a record batch
of its row group, read and cached by `parquet.row_bytes`.

Invariants: a member never reads past its own bytes; a short read (the shard
shrank, a member cut off) is an `OSError` naming ``shard#member``, as a file
that changed under a reader is.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from ingest.item import Member


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


def open_member(path: Path, member: Member, start: int = 0) -> BinaryIO:
    """A reader of `member`'s bytes from `start` (its own offset, not the shard's)."""
    if member.stored:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        return io.BufferedReader(_Range(fd, member.offset + start, member.length - start))
    if member.row is not None:  # a Parquet row: from its (cached) record batch
        from ingest.manifest.packed.parquet import row_bytes

        return io.BytesIO(row_bytes(path, member)[start:])
    where = f"{path}#{member.name}"
    assert member.compressed is not None
    info = zipfile.ZipInfo(member.name)
    info.compress_size, info.file_size = member.compressed, member.length
    if member.codec is not None:
        info.compress_type, info.CRC = member.codec
    else:
        info.compress_type = zipfile.ZIP_DEFLATED  # no CRC known: none checked
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    compressed = io.BufferedReader(_Range(fd, member.offset, member.compressed))
    try:
        raw = zipfile.ZipExtFile(compressed, "r", info, close_fileobj=True)
    except NotImplementedError as exc:  # a compression method zipfile does not know
        compressed.close()
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
    if member.row is not None:  # a Parquet row: the cached bytes themselves (a slice of them)
        from ingest.manifest.packed.parquet import row_bytes

        data = row_bytes(path, member)  # its length checked against the member's
        return data if start == 0 and want == len(data) else data[start : start + want]
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
