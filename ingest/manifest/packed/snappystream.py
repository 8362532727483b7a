"""Raw Snappy decompressed as a stream: a page's bytes come out in pieces, never held whole.

Owns `SnappyReader`: ``read(n)`` gives the next n decompressed bytes of one
raw Snappy block (Parquet's SNAPPY codec compresses each page as one block,
no framing), reading its compressed bytes from an `Input` (`Pieces` turns a
callable giving pieces into one).

How it works (Snappy's ``format_description.txt``, google/snappy): a varint
preamble gives the block's decompressed length; then elements, each a tag
byte whose low two bits say which: a literal (its length in the tag, or in
1-4 bytes after it, then that many bytes), or a copy of length L from
offset O back in the output (1-, 2- or 4-byte offsets). A literal's bytes
are the output's: `Input.take` gives them, so a large one is one ``pread``
into the bytes handed out (`parquetpieces.ChunkBytes`), no copy in Python,
and a `read` within one literal returns that object itself (an image of
incompressible bytes, as JPEG, PNG and WebP are, is one or two literals).
The output is kept only as the pieces that cover its last `WINDOW` bytes
(the large ones are the bytes handed out, referenced, not copied; small
ones, the copies' and short literals', joined in a buffer): Google's
compressor (which pyarrow, parquet-mr and Rust's snap all use) compresses
64 KiB fragments apart, so no copy reaches further back; a copy that reaches
past what is kept is `TooFar` (the caller reads the page another way),
never a wrong byte.

Invariants: the output is never longer than the preamble says and a block
that ends early or runs over is `SnappyError`, as is an offset of 0 or one
before the block's start; memory is the window (at least `WINDOW` bytes, at
most `WINDOW` plus its oldest piece), the unread rest of one copy and what
the caller asked for, whatever the block's size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

from ingest.manifest.packed.parquetthrift import Short

WINDOW = 64 << 10  # output kept for copies: Snappy's fragment size
SMALL = 4 << 10  # output pieces shorter than this are joined in the window's buffer
_PIECE = 64 << 10  # what `Pieces` asks its callable for at a time


class SnappyError(ValueError):
    """The bytes are not a valid raw Snappy block (or it is cut short)."""


class TooFar(Exception):
    """A copy reaches past the kept window: valid Snappy, but not streamable here."""


class Input(Protocol):
    """A block's compressed bytes: one at a time, exactly n (`Short` past the end), what is left."""

    def byte(self) -> int: ...

    def take(self, n: int) -> bytes: ...

    def left(self) -> int: ...


class Pieces:
    """An `Input` over a callable giving up to n bytes a call (b"" at the end)."""

    __slots__ = ("_buf", "_pos", "_source")

    def __init__(self, source: Callable[[int], bytes]) -> None:
        self._source, self._buf, self._pos = source, b"", 0

    def _more(self) -> bool:
        if self._pos >= len(self._buf):
            self._buf, self._pos = self._source(_PIECE), 0
        return self._pos < len(self._buf)

    def byte(self) -> int:
        if not self._more():
            raise Short
        self._pos += 1
        return self._buf[self._pos - 1]

    def take(self, n: int) -> bytes:
        parts, left = [], n
        while left > 0:
            if not self._more():
                raise Short
            part = self._buf[self._pos : self._pos + left]
            self._pos += len(part)
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    def left(self) -> int:
        return len(self._buf) - self._pos if self._more() else 0


class SnappyReader:
    """The decompressed bytes of one raw Snappy block, read from `source`."""

    __slots__ = (
        *("_carry", "_held", "_input", "_literal"),
        *("_pieces", "_produced", "_recent", "total"),
    )

    def __init__(self, source: Input) -> None:
        self._input = source
        self._pieces: deque[bytes] = deque()  # output before `_recent`, oldest first
        self._recent = bytearray()  # the latest output, when it came in small pieces
        self._held = 0  # bytes in `_pieces` and `_recent`
        self._produced = 0  # output decoded so far
        self._literal = 0  # bytes left of the literal at hand
        self._carry = b""  # decoded but not yet handed out (the rest of a copy)
        self.total = self._varint()  # the preamble: the block's decompressed length

    def read(self, n: int) -> bytes:
        """Up to `n` more decompressed bytes (fewer only at the block's end)."""
        parts: list[bytes] = []
        need = n
        if self._carry:
            piece, self._carry = self._carry[:need], self._carry[need:]
            parts.append(piece)
            need -= len(piece)
        while need > 0:
            if self._literal:
                k = min(need, self._literal)
                try:
                    piece = self._input.take(k)
                except Short:
                    raise SnappyError("the block ends in the middle of a literal") from None
                self._literal -= k
                self._keep(piece)
            elif self._produced >= self.total:
                if self._input.left():
                    raise SnappyError("bytes after the block's end")
                break
            else:
                try:
                    piece = self._element()
                except Short:
                    raise SnappyError("the block ends in the middle of an element") from None
                if not piece:  # a literal's tag: its bytes come next
                    continue
                if len(piece) > need:
                    piece, self._carry = piece[:need], piece[need:]
            parts.append(piece)
            need -= len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _keep(self, piece: bytes) -> None:
        """Add `piece` to the output kept for copies; drop what is past `WINDOW` back."""
        self._produced += len(piece)
        self._held += len(piece)
        recent = self._recent
        if len(piece) < SMALL:
            recent += piece
            if len(recent) < SMALL:
                return
            piece = bytes(recent)
            recent.clear()
        elif recent:
            self._pieces.append(bytes(recent))
            recent.clear()
        pieces = self._pieces
        pieces.append(piece)
        while len(pieces) > 1 and self._held - len(pieces[0]) >= WINDOW:
            self._held -= len(pieces.popleft())

    def _varint(self) -> int:
        value = 0
        for shift in range(0, 35, 7):
            try:
                b = self._input.byte()
            except Short:
                raise SnappyError("the block ends in the middle of an element") from None
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
        raise SnappyError("a length longer than 5 bytes")

    def _element(self) -> bytes:
        """The next element: b"" for a literal (`_literal` says how long), a copy's bytes
        (`Short` if the block ends inside it)."""
        source = self._input
        tag = source.byte()
        kind = tag & 3
        if kind == 0:
            length = tag >> 2
            if length >= 60:  # the length in 1-4 bytes after the tag, little-endian
                length = int.from_bytes(source.take(length - 59), "little")
            if self._produced + length + 1 > self.total:
                raise SnappyError("a literal runs past the block's length")
            self._literal = length + 1
            return b""
        if kind == 1:
            length, offset = 4 + ((tag >> 2) & 7), ((tag >> 5) << 8) | source.byte()
        else:
            length = (tag >> 2) + 1
            offset = int.from_bytes(source.take(2 if kind == 2 else 4), "little")
        return self._copy(length, offset)

    def _copy(self, length: int, offset: int) -> bytes:
        produced = self._produced
        if offset == 0 or offset > produced:
            raise SnappyError(f"a copy from offset {offset} of {produced} bytes")
        if produced + length > self.total:
            raise SnappyError("a copy runs past the block's length")
        if offset > self._held:
            raise TooFar(f"a copy from {offset} bytes back (the window keeps {self._held})")
        source = self._back(offset, min(length, offset))
        out = source if length <= offset else (source * (length // offset + 1))[:length]
        self._keep(out)
        return out

    def _back(self, offset: int, n: int) -> bytes:
        """`n` bytes of the output from `offset` bytes before its end."""
        recent = self._recent
        if offset <= len(recent):  # the usual case: a copy from close by
            start = len(recent) - offset
            return bytes(recent[start : start + n])
        parts = [bytes(recent[: max(0, n - offset + len(recent))])] if recent else []
        end = self._held - len(recent)  # where the pieces end, counted from the window's start
        first = self._held - offset  # where the bytes wanted start
        for piece in reversed(self._pieces):
            start = end - len(piece)
            if start < first + n:
                parts.append(piece[max(first, start) - start : min(first + n, end) - start])
            if start <= first:
                break
            end = start
        parts.reverse()
        return b"".join(parts)
