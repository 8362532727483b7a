"""A zip's central directory read entry by entry from its offset: flat memory at any member count.

Owns the listing of a zip's entries (`zip_entries`) without `zipfile.ZipFile`,
which reads the whole central directory at once and keeps a `ZipInfo` for
every member (about 100 MB for 10^6 members). The layout follows PKWARE's
APPNOTE.TXT 6.3: the end of central directory record (4.3.16, found in the
last 64 KiB + 22 bytes, as its comment may be up to 65,535 bytes), the
zip64 end record and its locator (4.3.14, 4.3.15), a central directory
header a member (4.3.12) and the zip64 extended information extra field
(4.5.3: the sizes and the offset that do not fit 32 bits). Names are decoded
as `zipfile` decodes them (UTF-8 with flag bit 11, else cp437; cut at a
NUL), and offsets are shifted by any data prepended to the archive (a
self-extracting stub) as `zipfile` shifts them, so both list the same
entries at the same offsets (the tests' property).

Invariants: entries come in the directory's order, one buffered sequential
read of it (nothing but the current entry held); a file without an end
record, or whose first entry does not check out, raises `ManifestError`
(not a zip); a later entry that does not (its signature wrong, the
directory cut short) ends the listing with that problem (`Damaged`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ingest.errors import ManifestError

_END = struct.Struct("<4s4H2LH")  # signature, disks, entries, entries, size, offset, comment
_LOCATOR = struct.Struct("<4sLQL")  # zip64 locator: signature, disk, end record offset, disks
_END64 = struct.Struct("<4sQ2H2L4Q")  # ..., entries, entries, directory size, directory offset
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # as zipfile's structCentralDir
_MAX_COMMENT = 0xFFFF
_FULL32 = 0xFFFFFFFF
_UTF8_NAME = 0x800


@dataclass(frozen=True, slots=True)
class ZipEntry:
    """One central directory entry: what a listing needs of it."""

    name: str
    flags: int
    method: int
    crc: int
    compressed: int
    size: int
    header_offset: int  # of its local header, in the file

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


@dataclass(frozen=True, slots=True)
class Damaged:
    """Why the directory ends here: the entries after this are lost."""

    problem: str


def zip_entries(fh: BinaryIO, size: int, path: str) -> Iterator[ZipEntry | Damaged]:
    """The entries of the zip open as `fh` (`size` bytes), in the directory's order.

    Raises `ManifestError` (source: `path`) at once if it is not a readable zip.
    """
    start, length, concat = _directory(fh, size, path)
    fh.seek(start)
    reader = fh  # buffered: the directory is read in order, a buffer at a time
    read = last = 0
    while read < length:
        head = reader.read(_CENTRAL.size)
        fields = _CENTRAL.unpack(head) if len(head) == _CENTRAL.size else None
        if fields is None or fields[0] != b"PK\x01\x02":
            what = "cut short" if fields is None else "damaged"
            if last == 0:
                reason = f"not a readable zip archive (central directory {what})"
                raise ManifestError(reason, source=path)
            yield Damaged(
                f"the zip's central directory is {what} at entry {last + 1}; "
                "the members after it are lost"
            )
            return
        name_len, extra_len, comment_len = fields[12:15]
        raw = reader.read(name_len)
        extra = reader.read(extra_len)
        reader.read(comment_len)
        read += _CENTRAL.size + name_len + extra_len + comment_len
        last += 1
        flags = fields[5]
        name = raw.decode("utf-8" if flags & _UTF8_NAME else "cp437").split("\x00", 1)[0]
        usize, csize, offset = _zip64(extra, fields[11], fields[10], fields[18])
        yield ZipEntry(name, flags, fields[6], fields[9], csize, usize, offset + concat)


def _directory(fh: BinaryIO, size: int, path: str) -> tuple[int, int, int]:
    """(where the central directory starts in the file, its length, the bytes before the
    archive), from the end record (and the zip64 end record right before it, as zipfile)."""
    tail_len = min(size, _END.size + _MAX_COMMENT)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    while at >= 0 and at + _END.size > len(tail):
        at = tail.rfind(b"PK\x05\x06", 0, at)
    if at < 0:
        raise ManifestError("not a readable zip archive (File is not a zip file)", source=path)
    end_at = size - tail_len + at
    fields = _END.unpack_from(tail, at)
    length, offset = fields[5], fields[6]
    records = _END.size
    located = end_at - _LOCATOR.size
    if located >= 0:
        fh.seek(located)
        locator = fh.read(_LOCATOR.size)
        if locator[:4] == b"PK\x06\x07" and located >= _END64.size:
            fh.seek(located - _END64.size)
            end64 = fh.read(_END64.size)
            if len(end64) == _END64.size and end64[:4] == b"PK\x06\x06":
                length, offset = _END64.unpack(end64)[8:10]
                records += _END64.size + _LOCATOR.size
    # Data before the archive (zipfile's "concat"): the directory is where it ends, not where
    # the end record says; every local header offset moves by as much.
    start = end_at - length - (records - _END.size)
    if start < 0:
        reason = "not a readable zip archive (Bad offset for central directory)"
        raise ManifestError(reason, source=path)
    return start, length, start - offset


def _zip64(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """The sizes and offset with the zip64 extra field's values where the header has 0xFFFFFFFF."""
    pos = 0
    while pos + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, pos)
        if kind == 1:
            values = list(struct.unpack_from(f"<{min(length, 24) // 8}Q", extra, pos + 4))
            if usize == _FULL32 and values:
                usize = values.pop(0)
            if csize == _FULL32 and values:
                csize = values.pop(0)
            if offset == _FULL32 and values:
                offset = values.pop(0)
            break
        pos += 4 + length
    return usize, csize, offset
