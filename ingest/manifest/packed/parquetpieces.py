"""The pieces a streamed Parquet column is read with: a chunk's bytes, a page's decompressed bytes, levels.

Owns `ChunkBytes` (a column chunk's byte range of the file: small reads
from a buffer of `FILL` bytes, a read of `DIRECT` bytes or more one
``pread`` into the bytes returned; what page headers and page data are read
from), `page_body` (a page's data decompressed as it is read: exactly the
bytes asked for, or `Damaged`), `hybrid` (the RLE / bit-packed hybrid
encoding of definition levels and dictionary indices), the codecs this
reader streams (`CODECS`) and the two ways a stream fails: `Damaged` (the
file is wrong) and `Unstreamable` (valid, but not something this reader
streams: the caller reads it with pyarrow).

How it works: codecs (``parquet.thrift``, CompressionCodec): UNCOMPRESSED is
the chunk's bytes themselves; SNAPPY one raw Snappy block a page
(`snappystream`, its literals read from the page's own `ChunkBytes`: an
image's bytes are one or two ``pread`` calls, not copied in Python), or, for a page that shrank by more than a tenth (many
copies, which the Python decoder takes ~0.4 s a MiB to replay against
pyarrow's native 3 ms; images already compressed shrink by next to nothing),
the page decompressed whole by pyarrow, up to `HELD` (larger: `Unstreamable`,
pyarrow reads it); GZIP a gzip stream (``zlib.decompressobj``, asked for at
most the bytes wanted, its unconsumed input kept); ZSTD through
``zstandard``'s stream reader when that package is installed (the parquet
extra brings it). The hybrid encoding
(https://github.com/apache/parquet-format/blob/master/Encodings.md):
runs, each a varint header whose low bit says bit-packed (header >> 1 groups
of 8 values, each group `width` bytes, least significant bit first) or RLE
(header >> 1 repeats of one value in ceil(width / 8) bytes).

Invariants: no read goes past the chunk's range (`Damaged`: "runs past its
column chunk"), nor past a page's (`ChunkBytes.sub`); memory is a `FILL`
buffer or a `PIECE` of the chunk and what the caller asked for, never a page
but a compressible Snappy one of at most `HELD`.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from typing import Any

from ingest.manifest.packed.parquetthrift import Short
from ingest.manifest.packed.snappystream import SnappyError, SnappyReader, TooFar

PIECE = 256 << 10  # what a gzip or zstd stream, or a read past a value, asks for at a time
FILL = 16 << 10  # the chunk's bytes read at a time for small reads (headers, levels, short values)
DIRECT = 16 << 10  # a read this long is one pread of its own, into the bytes it returns
HELD = 16 << 20  # a compressible Snappy page is decompressed whole up to this size (see below)
Read = Callable[[int], bytes]  # up to n bytes (b"" at the end)


class Damaged(Exception):
    """The file's bytes are wrong here (a bad header, a short read, a stream that overruns)."""


class Unstreamable(Exception):
    """Valid Parquet this reader does not stream (read it with pyarrow instead)."""


def said(exc: BaseException) -> str:
    """A foreign error's words (pyarrow's, zlib's, zstandard's) as one printable line: a
    control character as its escape, a run of whitespace (pyarrow's newlines) as one space."""
    text = "".join(
        c if c.isprintable() or c.isspace() else c.encode("unicode_escape").decode()
        for c in str(exc)
    )
    return " ".join(text.split())


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard


def codecs() -> frozenset[str]:
    """The codecs `page_body` streams (ZSTD only with ``zstandard`` installed)."""
    found = {"UNCOMPRESSED", "SNAPPY", "GZIP"}
    return frozenset(found | {"ZSTD"} if _zstandard() is not None else found)


class ChunkBytes:
    """Bytes [start, end) of the open file `fd`, read in pieces (a `parquetthrift.Bytes`)."""

    __slots__ = ("_buf", "_end", "_fd", "_next", "_pos")

    def __init__(self, fd: int, start: int, end: int) -> None:
        self._fd, self._end = fd, end
        self._buf, self._pos, self._next = b"", 0, start

    def tell(self) -> int:
        return self._next - len(self._buf) + self._pos

    def seek(self, at: int) -> None:
        self._buf, self._pos, self._next = b"", 0, at

    def left(self) -> int:
        """Bytes of the range not yet read."""
        return self._end - self.tell()

    def sub(self, size: int) -> ChunkBytes:
        """The next `size` bytes as a range of their own (`Damaged` past this one); this one
        moves past them."""
        at = self.tell()
        if at + size > self._end:
            raise Damaged("a page runs past its column chunk")
        self.seek(at + size)
        return ChunkBytes(self._fd, at, at + size)

    def _fill(self, want: int) -> None:
        size = min(max(want, FILL), self._end - self._next)
        data = os.pread(self._fd, size, self._next) if size > 0 else b""
        if not data:
            raise Short
        self._buf, self._pos = data, 0
        self._next += len(data)

    def byte(self) -> int:
        if self._pos >= len(self._buf):
            self._fill(1)
        self._pos += 1
        return self._buf[self._pos - 1]

    def skip(self, n: int) -> None:
        if n <= len(self._buf) - self._pos:
            self._pos += n
        elif self.tell() + n > self._end:
            raise Short
        else:
            self.seek(self.tell() + n)

    def take(self, n: int) -> bytes:
        """Exactly `n` bytes (`Short` if the range or the file ends first)."""
        if n <= len(self._buf) - self._pos:
            self._pos += n
            return self._buf[self._pos - n : self._pos]
        if n >= DIRECT:  # a large value: one read of its own (its buffered start read again)
            at = self.tell()
            if at + n > self._end:
                raise Short
            data = os.pread(self._fd, n, at)
            if len(data) < n:
                raise Short
            self.seek(at + n)
            return data
        first = self._buf[self._pos :]
        self._fill(n - len(first))
        self._pos = n - len(first)
        rest = self._buf[: self._pos]
        if len(rest) < self._pos:
            raise Short
        return first + rest if first else rest

    def reader(self, size: int) -> Read:
        """The next `size` bytes as a `Read` (b"" past them)."""
        left = size

        def read(n: int) -> bytes:
            nonlocal left
            k = min(n, left)
            if k <= 0:
                return b""
            try:
                data = self.take(k)
            except Short:
                raise Damaged("the file ends inside a page") from None
            left -= k
            return data

        return read


class _Inflate:
    """A gzip (or zlib) stream's bytes, decompressed no further than asked."""

    __slots__ = ("_d", "_source")

    def __init__(self, source: Read) -> None:
        self._source, self._d = source, zlib.decompressobj(47)  # 32 + 15: gzip or zlib header

    def read(self, n: int) -> bytes:
        parts, have = [], 0
        while have < n:
            tail = self._d.unconsumed_tail
            if not tail:
                if self._d.eof:
                    break
                tail = self._source(PIECE)
                if not tail:
                    break
            data = self._d.decompress(tail, n - have)
            parts.append(data)
            have += len(data)
        return b"".join(parts)


def _held_snappy(source: Read, size: int, out: int) -> Read:
    """A compressible Snappy page decompressed whole by pyarrow's native Snappy (see `HELD`)."""
    import pyarrow as pa

    if out > HELD:
        raise Unstreamable(f"a compressible snappy page of {out / 2**20:.1f} MiB")
    try:
        data = memoryview(pa.decompress(source(size), out, codec="snappy", asbytes=True))
    except (OSError, ValueError) as exc:  # pyarrow's errors (ArrowInvalid is a ValueError)
        raise Damaged(f"a damaged snappy stream ({said(exc)})") from None
    at = 0

    def read(n: int) -> bytes:
        nonlocal at
        at += n
        return bytes(data[at - n : at])

    return read


def page_body(chunk: ChunkBytes, size: int, codec: str, out: int) -> Read:
    """A page's next `size` stored bytes (`out` decompressed) as they decompress: exactly n
    bytes a call, or `Damaged`; `chunk` moves past them."""
    if size < 0:
        raise Damaged(f"a page's sizes leave {size} bytes for its data")
    page = chunk.sub(size)
    source = page.reader(size)
    read: Read
    if codec == "UNCOMPRESSED":
        read = source
    elif codec == "SNAPPY" and out > size * 1.1:
        read = _held_snappy(source, size, out)
    elif codec == "SNAPPY":
        try:
            read = SnappyReader(page).read
        except SnappyError as exc:
            raise Damaged(f"a damaged snappy stream ({said(exc)})") from None
    elif codec == "GZIP":
        read = _Inflate(source).read
    elif codec == "ZSTD" and (zstandard := _zstandard()) is not None:
        read = zstandard.ZstdDecompressor().stream_reader(_FileLike(source)).read
    else:
        raise Unstreamable(f"the {codec} codec")

    def exact(n: int) -> bytes:
        if n < 0:  # the page's sizes leave less than nothing (a zstd read(-1) reads it all)
            raise Damaged(f"a page's sizes leave {n} bytes for its data")
        try:
            data = read(n)
            while len(data) < n and (more := read(n - len(data))):
                data += more
        except (SnappyError, zlib.error) as exc:
            raise Damaged(f"a damaged {codec.lower()} stream ({said(exc)})") from None
        except TooFar as exc:
            raise Unstreamable(f"a snappy stream not in 64 KiB fragments ({exc})") from None
        except Damaged:
            raise
        except Exception as exc:  # zstandard.ZstdError
            raise Damaged(f"a damaged {codec.lower()} stream ({said(exc)})") from None
        if len(data) < n:
            raise Damaged(f"a page's data ends early ({len(data)} of {n} bytes)")
        return data

    return exact


class _FileLike:
    """A `Read` as the file object `zstandard`'s stream reader reads from."""

    __slots__ = ("_read",)

    def __init__(self, read: Read) -> None:
        self._read = read

    def read(self, n: int = -1) -> bytes:
        return self._read(PIECE if n < 0 else n)


def hybrid(data: bytes, width: int, count: int) -> list[int]:
    """`count` values of the RLE / bit-packed hybrid encoding in `data` (`Damaged` if short)."""
    out: list[int] = []
    pos, size, mask = 0, len(data), (1 << width) - 1
    rle_bytes = (width + 7) // 8
    while len(out) < count:
        header = shift = 0
        while True:
            if pos >= size:
                raise Damaged(f"levels or indices end early ({len(out)} of {count})")
            b = data[pos]
            pos += 1
            header |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
            if shift > 35:
                raise Damaged("a run header longer than 5 bytes")
        if header & 1:  # bit-packed: groups of 8 values (none unpacked past `count`)
            groups = min(header >> 1, (count - len(out) + 7) // 8)
            if pos + groups * width > size and width:
                raise Damaged(f"bit-packed values end early ({len(out)} of {count})")
            for _ in range(groups):
                word = int.from_bytes(data[pos : pos + width], "little")
                pos += width
                out.extend((word >> (i * width)) & mask for i in range(8))
        else:
            if pos + rle_bytes > size:
                raise Damaged(f"a run ends early ({len(out)} of {count})")
            value = int.from_bytes(data[pos : pos + rle_bytes], "little")
            pos += rle_bytes
            out.extend([value] * min(header >> 1, count - len(out)))
    del out[count:]
    return out
