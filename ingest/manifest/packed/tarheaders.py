"""The headers of an uncompressed tar, read directly: one ``pread`` of 512 bytes a member.

Owns the listing of a tar's members (`tar_members`) without `tarfile`, whose
header parsing cost ~0.13 ms a member (as much as uploading a small file): the
ustar/GNU header fields a listing needs (name with its ustar prefix, size in
octal or base-256, type flag, checksum), POSIX pax extended headers (``path``
and ``size``, as written by Python's `tarfile` and GNU tar) and GNU long names
(type ``L``). The layout follows POSIX.1-2001 (pax) and GNU tar's manual
("Basic Tar Format"); `tarfile` reads the same archives and is the tests'
writer.

Invariants: a member's data is the `size` bytes right after its header,
padded to 512; only regular files (type ``0``, NUL or ``7``) are listed; the
first header must check out, or the file is not a tar (`ManifestError`); a
later header that does not (its checksum wrong: damaged; the file ends inside
it: cut short) ends the listing with that problem, as does a file that ends
inside a member's padding (cut short there: GNU tar and `tarfile` say "unexpected end"); a
member cut off by the end of the file is listed with its problem, and nothing
is read after it.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator

from ingest.errors import ManifestError
from ingest.item import Member
from ingest.manifest.packed.members import Listed, truncated

BLOCK = 512
_REGULAR = frozenset({b"0", b"\x00", b"7"})
_META = frozenset({b"x", b"g", b"L", b"K"})  # pax, pax global, GNU long name, GNU long link
_SIGNED = struct.Struct("148b8x356b")
_USTAR = b"ustar\x00"


def tar_members(fd: int, size: int, path: str) -> Iterator[Listed]:
    """The regular members of the tar open at `fd` (`size` bytes), in order."""
    offset, first, last = 0, True, None
    pax: dict[str, str] = {}
    long_name: str | None = None
    while True:
        block = os.pread(fd, BLOCK, offset)
        if not block.strip(b"\x00"):
            if first and not block:
                raise ManifestError("not a tar archive (the file is empty)", source=path)
            if offset > size:  # GNU tar and tarfile: "unexpected end of data"
                yield Listed(None, _cut_in_padding(offset, size, last))
            return  # the end-of-archive blocks (or the end of the file)
        if len(block) < BLOCK:  # a download cut off inside a header: cut, not damaged
            problem: str | None = _cut_in_header(offset, size, last)
        else:
            problem = None if _checksum_ok(block) else _damaged(offset, last)
        if problem is not None:
            if first:
                raise ManifestError("not a tar archive (no valid tar header)", source=path)
            yield Listed(None, problem)
            return
        first = False
        kind = block[156:157]
        try:
            length = (
                int(pax["size"]) if "size" in pax and kind not in _META else _number(block[124:136])
            )
        except ValueError:
            yield Listed(None, _damaged(offset, last))
            return
        data = offset + BLOCK
        offset = data + -(-length // BLOCK) * BLOCK
        if kind in _META:
            if data + length > size:
                yield Listed(None, f"the tar ends inside an extended header after {last!r}")
                return
            content = os.pread(fd, length, data)
            if kind == b"x":
                pax = _pax(content)
            elif kind == b"L":
                long_name = _text(content.split(b"\x00", 1)[0])
            continue
        name = long_name or pax.get("path") or _name(block)
        long_name, pax, last = None, {}, name
        if kind not in _REGULAR:
            continue
        cut = truncated(data, length, size)
        yield Listed(Member(name, data, length), cut)
        if cut is not None:
            return  # nothing can be read after a member the file cuts off


def _cut_in_padding(offset: int, size: int, last: str | None) -> str:
    of = f" of member {last!r}" if last is not None else ""
    return (
        f"the tar is cut short: it ends at byte {size}, inside the padding{of} (to byte "
        f"{offset}); the members after it are lost"
    )


def _cut_in_header(offset: int, size: int, last: str | None) -> str:
    after = f" after member {last!r}" if last is not None else ""
    return (
        f"the tar is cut short: it ends at byte {size}, inside the header at byte {offset}"
        f"{after}; the members after it are lost"
    )


def _damaged(offset: int, last: str | None) -> str:
    after = f" after member {last!r}" if last is not None else ""
    return f"damaged tar header at byte {offset}{after}; the members after it are lost"


def _checksum_ok(block: bytes) -> bool:
    try:
        stored = _number(block[148:156])
    except ValueError:
        return False
    view = memoryview(block)  # the checksum field, [148:156], counted as 8 spaces
    unsigned = _byte_sum(view[:148]) + 256 + _byte_sum(view[156:384]) + _byte_sum(view[384:])
    return stored == unsigned or stored == sum(_SIGNED.unpack_from(block)) + 256


def _byte_sum(data: memoryview) -> int:
    """The sum of at most 256 bytes, as Adler-32's first sum (RFC 1950, 8.2: 1 + the bytes'
    sum, modulo 65521, which 256 x 255 + 1 stays under): in C, 1/6 of `sum` over the bytes
    (~2 of ~12 us a header, the largest cost of listing a member)."""
    return (zlib.adler32(data) & 0xFFFF) - 1


def _number(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256, for sizes of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    digits = field.split(b"\x00", 1)[0].strip()
    return int(digits, 8) if digits else 0


def _name(block: bytes) -> str:
    name = block[:100].split(b"\x00", 1)[0]
    if block[257:263] == _USTAR:
        prefix = block[345:500].split(b"\x00", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return _text(name)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _pax(content: bytes) -> dict[str, str]:
    """The records of a pax extended header: ``"%d %s=%s\\n"`` each."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(content):
        space = content.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(content[pos:space])
        except ValueError:
            break
        record = content[space + 1 : pos + length - 1]  # without its newline
        key, _, value = record.partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += max(length, 1)
    return records
