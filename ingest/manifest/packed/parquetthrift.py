"""Parquet page headers: the Thrift compact protocol, just enough to read a ``PageHeader``.

Owns `PageHeader` (what a page says of itself: its type, sizes, value count,
encodings, and for a v2 data page its level lengths and whether its values
are compressed), `read_header` (one header read from a `Bytes` source, every
field this module does not use skipped by its type, so unknown and future
fields cost nothing) and `Compact` (the protocol's varints, zigzag ints,
field headers and skipping).

How it works: the structs are those of ``parquet.thrift`` (apache/parquet-format):
``PageHeader`` 1 type, 2 uncompressed size, 3 compressed size, 4 crc,
5 ``DataPageHeader`` (1 values, 2 encoding, 3 definition-level encoding,
4 repetition-level encoding), 7 ``DictionaryPageHeader`` (1 values,
2 encoding), 8 ``DataPageHeaderV2`` (1 values, 2 nulls, 3 rows, 4 encoding,
5 definition-levels byte length, 6 repetition-levels byte length,
7 is_compressed, default true). The compact protocol
(https://github.com/apache/thrift/blob/master/doc/specs/thrift-compact-protocol.md):
a field header byte is a delta to the field id in
its high nibble (0: a zigzag i16 id follows) and a type in its low one; ints
are zigzag varints; a bool field's value is its type (1 true, 2 false); a
binary is a varint length and its bytes (skipped without being read).

Invariants: a header that runs past its source is `Short`; one that is not
Thrift (an unknown type, a negative size) is `BadHeader`; neither is ever an
IndexError or a loop without end (a varint is at most 10 bytes).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

DATA_PAGE, INDEX_PAGE, DICTIONARY_PAGE, DATA_PAGE_V2 = 0, 1, 2, 3
PLAIN, PLAIN_DICTIONARY, RLE, BIT_PACKED, RLE_DICTIONARY = 0, 2, 3, 4, 8
ENCODINGS = {
    0: "PLAIN",
    2: "PLAIN_DICTIONARY",
    3: "RLE",
    4: "BIT_PACKED",
    5: "DELTA_BINARY_PACKED",
    6: "DELTA_LENGTH_BYTE_ARRAY",
    7: "DELTA_BYTE_ARRAY",
    8: "RLE_DICTIONARY",
    9: "BYTE_STREAM_SPLIT",
}


class Short(Exception):
    """The header runs past the bytes there are."""


class BadHeader(Exception):
    """The bytes are not a Thrift compact-protocol page header."""


class Bytes(Protocol):
    """Where a header is read from: a byte at a time, or bytes skipped."""

    def byte(self) -> int: ...

    def skip(self, n: int) -> None: ...


class Buffer:
    """A `Bytes` over bytes in memory (`Short` past their end)."""

    __slots__ = ("at", "data")

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def byte(self) -> int:
        if self.at >= len(self.data):
            raise Short
        self.at += 1
        return self.data[self.at - 1]

    def skip(self, n: int) -> None:
        if self.at + n > len(self.data):
            raise Short
        self.at += n


@dataclass(frozen=True, slots=True)
class PageHeader:
    """One page's header; `length` is the header's own bytes (the page's data follows)."""

    kind: int
    uncompressed: int
    compressed: int
    values: int
    encoding: int
    length: int
    levels_encoding: int = RLE  # a v1 data page's definition levels
    nulls: int = 0  # v2
    definition_bytes: int = 0  # v2: the definition levels' bytes, before the values
    repetition_bytes: int = 0  # v2
    values_compressed: bool = True  # v2: false when the values are stored as they are

    @property
    def data_page(self) -> bool:
        return self.kind in (DATA_PAGE, DATA_PAGE_V2)


class Compact:
    """Thrift's compact protocol over a `Bytes` source."""

    __slots__ = ("count", "src")

    def __init__(self, src: Bytes) -> None:
        self.src, self.count = src, 0  # count: bytes taken, for the header's length

    def byte(self) -> int:
        self.count += 1
        return self.src.byte()

    def varint(self) -> int:
        value = 0
        for shift in range(0, 70, 7):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
        raise BadHeader("a varint longer than 10 bytes")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def fields(self) -> Iterator[tuple[int, int]]:
        """(field id, type) of a struct's fields, in order; the caller reads or skips each."""
        last = 0
        while (head := self.byte()) != 0:
            delta, kind = head >> 4, head & 0x0F
            last = last + delta if delta else self.zigzag()
            yield last, kind

    def skip(self, kind: int, depth: int = 0) -> None:
        if depth > 32:
            raise BadHeader("structs nested too deep")
        if kind in (1, 2):  # booleans: the value is the type
            return
        if kind == 3:
            self.byte()
        elif kind in (4, 5, 6):
            self.varint()
        elif kind == 7:
            self._advance(8)
        elif kind == 8:
            self._advance(self.varint())
        elif kind in (9, 10):
            head = self.byte()
            size = head >> 4 if head >> 4 != 15 else self.varint()
            for _ in range(size):
                self._element(head & 0x0F, depth)
        elif kind == 11:
            size = self.varint()
            types = self.byte() if size else 0
            for _ in range(size):
                self._element(types >> 4, depth)
                self._element(types & 0x0F, depth)
        elif kind == 12:
            for _, inner in self.fields():
                self.skip(inner, depth + 1)
        else:
            raise BadHeader(f"unknown Thrift type {kind}")

    def _element(self, kind: int, depth: int) -> None:
        if kind in (1, 2):  # a boolean in a list is a byte
            self.byte()
        else:
            self.skip(kind, depth + 1)

    def _advance(self, n: int) -> None:
        self.count += n
        self.src.skip(n)


def read_header(src: Bytes) -> PageHeader:
    """The `PageHeader` at `src`'s position (its bytes taken from `src`)."""
    reader = Compact(src)
    top: dict[int, int] = {}
    inner: dict[int, int] = {}
    which = -1
    for field, ftype in reader.fields():
        if field in (1, 2, 3) and ftype == 5:
            top[field] = reader.zigzag()
        elif field in (5, 7, 8) and ftype == 12:
            which = field
            for sub, stype in reader.fields():
                if stype == 5 and sub <= 6:
                    inner[sub] = reader.zigzag()
                elif sub == 7 and stype in (1, 2):
                    inner[7] = 1 if stype == 1 else 0
                else:
                    reader.skip(stype)
        else:
            reader.skip(ftype)
    if len(top) < 3 or min(top.values()) < 0 or min(inner.values(), default=0) < 0:
        raise BadHeader("a page header without its type and sizes")
    kind, uncompressed, compressed = top[1], top[2], top[3]
    values = inner.get(1, 0)
    if which == 8:
        return PageHeader(
            kind, uncompressed, compressed, values, inner.get(4, PLAIN), reader.count,
            nulls=inner.get(2, 0), definition_bytes=inner.get(5, 0),
            repetition_bytes=inner.get(6, 0), values_compressed=inner.get(7, 1) == 1,
        )  # fmt: skip
    encoding = inner.get(2, PLAIN)
    levels = inner.get(3, RLE) if which == 5 else RLE
    return PageHeader(kind, uncompressed, compressed, values, encoding, reader.count, levels)
