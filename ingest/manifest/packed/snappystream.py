"""Raw Snappy decompressed as a stream: a page's bytes come out in pieces, never held whole.

Owns `SnappyReader`: ``read(n)`` gives the next n decompressed bytes of one
raw Snappy block (Parquet's SNAPPY codec compresses each page as one block,
no framing), reading its compressed bytes through a callable in pieces.

How it works (Snappy's ``format_description.txt``, google/snappy): a varint
preamble gives the block's decompressed length; then elements, each a tag
byte whose low two bits say which: a literal (its length in the tag, or in
1-4 bytes after it, then that many bytes, copied from the input by
memoryview), or a copy of length L from offset O back in the output (1-, 2-
or 4-byte offsets). The output so far is kept only as a window of the last
`WINDOW` bytes (plus what the caller has not read yet): Google's compressor
(which pyarrow, parquet-mr and Rust's snap all use) compresses 64 KiB
fragments apart, so no copy reaches further back; a copy that does is
`TooFar` (the caller reads the page another way), never a wrong byte.

Invariants: the output is never longer than the preamble says and a block
that ends early or runs over is `SnappyError`, as is an offset of 0 or one
before the block's start; memory is the window, the unread output and one
input piece, whatever the block's size.
"""

from __future__ import annotations

from collections.abc import Callable

WINDOW = 64 << 10  # output kept for copies: Snappy's fragment size
_PIECE = 64 << 10  # compressed bytes read at a time


class SnappyError(ValueError):
    """The bytes are not a valid raw Snappy block (or it is cut short)."""


class TooFar(Exception):
    """A copy reaches past the kept window: valid Snappy, but not streamable here."""


class SnappyReader:
    """The decompressed bytes of one raw Snappy block, read from `source` (b"" at its end)."""

    __slots__ = ("_base", "_done", "_in", "_out", "_pos", "_read", "_source", "total")

    def __init__(self, source: Callable[[int], bytes]) -> None:
        self._source = source
        self._in, self._pos = b"", 0  # the compressed piece at hand and the position in it
        self._out = bytearray()  # the window, then the output not yet read
        self._read = 0  # of `_out`: bytes already handed out
        self._base = 0  # decompressed bytes dropped from the front of `_out`
        self._done = False
        self.total = self._varint()  # the preamble: the block's decompressed length

    def read(self, n: int) -> bytes:
        """Up to `n` more decompressed bytes (fewer only at the block's end)."""
        while len(self._out) - self._read < n and not self._done:
            self._element()
        out = self._out
        with memoryview(out) as view:  # one copy (a bytearray's slice would be a second)
            data = bytes(view[self._read : self._read + n])
        self._read += len(data)
        if self._read > 4 * WINDOW:  # keep the window; drop the older output (amortised)
            cut = self._read - WINDOW
            del out[:cut]
            self._read -= cut
            self._base += cut
        return data

    def _byte(self) -> int:
        if self._pos >= len(self._in) and not self._fill():
            raise SnappyError("the block ends in the middle of an element")
        self._pos += 1
        return self._in[self._pos - 1]

    def _fill(self) -> bool:
        self._in, self._pos = self._source(_PIECE), 0
        return bool(self._in)

    def _varint(self) -> int:
        value = 0
        for shift in range(0, 35, 7):
            b = self._byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
        raise SnappyError("a length longer than 5 bytes")

    def _little(self, n: int) -> int:
        value = 0
        for shift in range(0, 8 * n, 8):
            value |= self._byte() << shift
        return value

    def _element(self) -> None:
        produced = self._base + len(self._out)
        if produced >= self.total:
            if self._pos < len(self._in) or self._fill():
                raise SnappyError("bytes after the block's end")
            self._done = True
            return
        tag = self._byte()
        kind = tag & 3
        if kind == 0:
            length = tag >> 2
            if length >= 60:
                length = self._little(length - 59)
            self._literal(length + 1, produced)
            return
        if kind == 1:
            length, offset = 4 + ((tag >> 2) & 7), ((tag >> 5) << 8) | self._byte()
        else:
            length, offset = (tag >> 2) + 1, self._little(2 if kind == 2 else 4)
        self._copy(length, offset, produced)

    def _literal(self, length: int, produced: int) -> None:
        if produced + length > self.total:
            raise SnappyError("a literal runs past the block's length")
        out = self._out
        while length > 0:
            if self._pos >= len(self._in) and not self._fill():
                raise SnappyError("the block ends in the middle of a literal")
            take = min(length, len(self._in) - self._pos)
            out += memoryview(self._in)[self._pos : self._pos + take]
            self._pos += take
            length -= take

    def _copy(self, length: int, offset: int, produced: int) -> None:
        if offset == 0 or offset > produced:
            raise SnappyError(f"a copy from offset {offset} of {produced} bytes")
        if produced + length > self.total:
            raise SnappyError("a copy runs past the block's length")
        out = self._out
        if offset > len(out):
            raise TooFar(f"a copy from {offset} bytes back (the window keeps {len(out)})")
        start = len(out) - offset
        if length <= offset:
            out += out[start : start + length]
        else:  # overlapping: the last `offset` bytes repeat
            pattern = bytes(out[start:])
            out += (pattern * (length // offset + 1))[:length]
