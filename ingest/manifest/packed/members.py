"""The members of a packed shard, in its order, without unpacking anything.

Owns how a shard's members are listed: an uncompressed ``.tar`` by walking its
headers (`tarheaders`: one 512-byte read a member, its data skipped, so
memory stays flat at any shard size); a ``.zip`` from its central directory
read entry by entry (`zipdir`, flat too), each member's data offset read
from its local header. A tar member, and a stored zip member, is a
contiguous byte range of the shard file (`Member.stored`); a compressed zip
member keeps its compressed size, method and CRC-32 and is read by
decompressing (`access`).

Invariants: only regular files are members (directories, links and devices
are passed over); a member whose bytes run past the end of the file is listed
with its problem ("truncated"), never silently dropped; a shard that cannot be
listed at all raises `ManifestError` before any member; one whose listing
breaks part way yields what came before and then that problem.
"""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal

from ingest.errors import ManifestError
from ingest.item import Member

ShardKind = Literal["tar", "zip"]
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., name length, extra length
_ZIP_SIGNATURE = b"PK\x03\x04"


@dataclass(frozen=True, slots=True)
class Listed:
    """One member of a shard, or (with `problem`) why it, or the rest of the shard, is unusable."""

    member: Member | None
    problem: str | None = None


def shard_kind(name: str) -> ShardKind | None:
    lowered = name.lower()
    if lowered.endswith(".tar"):
        return "tar"
    if lowered.endswith(".zip"):
        return "zip"
    return None


def list_members(path: str, kind: ShardKind) -> Generator[Listed, None, None]:
    """The members of the shard at `path`, in the shard's order.

    Raises `ManifestError` (source: the shard), at the first member asked for, if
    it cannot be opened or is not a `kind` shard (`probe_shard` asks at once).
    """
    with _open(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        yield from (_tar_members(fh, size, path) if kind == "tar" else _zip_members(fh, size, path))


def listed_names(path: str, kind: ShardKind) -> Generator[str | None, None, None]:
    """The name of each member `list_members` lists, in order; None for a listing problem.

    A zip's come from its central directory alone: no local header is read
    (a seek-ahead count needs only the names; a ``pread`` a member was
    most of its cost). Raises as `list_members` does.
    """
    if kind == "tar":
        yield from (e.member.name if e.member else None for e in list_members(path, kind))
        return
    from ingest.manifest.packed.zipdir import Damaged, zip_entries

    with _open(path) as fh:
        for entry in zip_entries(fh, os.fstat(fh.fileno()).st_size, path):
            if isinstance(entry, Damaged):
                yield None
                return
            if not entry.is_dir:  # every other entry is listed, with or without a problem
                yield entry.name


def _open(path: str) -> BinaryIO:
    try:
        return open(path, "rb")  # the caller closes it
    except FileNotFoundError:
        raise ManifestError("shard not found (no such file)", source=path) from None
    except OSError as exc:
        raise ManifestError(f"cannot read the shard: {exc.strerror or exc}", source=path) from None


def probe_shard(path: str, kind: ShardKind) -> None:
    """Raise `ManifestError` now if the shard at `path` cannot be listed."""
    listing = list_members(path, kind)
    try:
        next(listing, None)
    finally:
        listing.close()


def _tar_members(fh: BinaryIO, size: int, path: str) -> Iterator[Listed]:
    from ingest.manifest.packed.tarheaders import tar_members  # it imports this module

    head = fh.read(512)
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")):
        raise ManifestError(
            "a compressed tar; ingest reads members in place from an uncompressed .tar "
            "(decompress it first, e.g. gunzip)",
            source=path,
        )
    return tar_members(fh.fileno(), size, path)


def _zip_members(fh: BinaryIO, size: int, path: str) -> Iterator[Listed]:
    from ingest.manifest.packed.zipdir import Damaged, zip_entries

    fd = fh.fileno()
    for entry in zip_entries(fh, size, path):
        if isinstance(entry, Damaged):
            yield Listed(None, entry.problem)
            return
        if entry.is_dir:
            continue
        if entry.flags & 0x1:
            yield Listed(Member(entry.name, 0, entry.size), "encrypted member")
            continue
        local = os.pread(fd, _LOCAL_HEADER.size, entry.header_offset)
        if len(local) < _LOCAL_HEADER.size or not local.startswith(_ZIP_SIGNATURE):
            yield Listed(Member(entry.name, 0, entry.size), "damaged local header")
            continue
        _, name_len, extra_len = _LOCAL_HEADER.unpack(local)
        offset = entry.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        stored = entry.method == zipfile.ZIP_STORED
        member = Member(
            entry.name,
            offset,
            entry.size,
            None if stored else entry.compressed,
            codec=None if stored else (entry.method, entry.crc),
        )
        yield Listed(member, truncated(offset, entry.compressed, size))


def truncated(offset: int, length: int, size: int) -> str | None:
    if offset + length <= size:
        return None
    return (
        f"truncated member (bytes {offset}-{offset + length} of a shard that ends at byte {size})"
    )
