"""Synthetic images for benchmarks: sniffable headers, incompressible bodies, fast to write.

Each file starts with its format's real signature (PNG signature and IHDR,
JPEG SOI/JFIF, RIFF/WEBP/VP8) and ends with its end marker (PNG's IEND
chunk, JPEG's EOI), so validation accepts it as whole; between them, a
16-byte per-file nonce and a slice of one cached pseudo-random pool, so
files differ and do not compress. Writing runs at disk speed (no per-byte RNG).

A manifest may list more entries than there are files (`entries` >
`len(paths)`): distinct ids then cycle over the same files, which is how a
10^6-entry manifest is built from a few thousand files.
"""

from __future__ import annotations

import functools
import random
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import orjson

Kind = Literal["png", "jpeg", "webp"]
KINDS: tuple[Kind, ...] = ("png", "jpeg", "webp")
SUFFIXES: dict[Kind, str] = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
MIN_SIZE = 64
_POOL = (1 << 22) + 4099  # 4 MiB and a bit: slices at varied offsets rarely repeat


@functools.cache
def _pool() -> bytes:
    return random.Random(0x5EED).randbytes(_POOL)


def _header(kind: Kind, size: int, rng: random.Random) -> bytes:
    width, height = rng.randrange(64, 4096), rng.randrange(64, 4096)
    if kind == "png":
        ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr
        return head + struct.pack(">I", zlib.crc32(ihdr)) + struct.pack(">I", size) + b"IDAT"
    if kind == "jpeg":
        return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    head = b"RIFF" + struct.pack("<I", size - 8) + b"WEBPVP8 " + struct.pack("<I", size - 20)
    return head + b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", width, height)


def _trailer(kind: Kind) -> bytes:
    """The end marker validation looks for (`ingest.sniff.truncation`): PNG's IEND, JPEG's EOI."""
    if kind == "png":
        return struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    if kind == "jpeg":
        return b"\xff\xd9"
    return b""


def image_bytes(kind: Kind, size: int, seed: int) -> bytes:
    """`size` bytes of a sniffable `kind` image that ends as a whole one, fixed by `seed`."""
    if size < MIN_SIZE:
        raise ValueError(f"image size must be at least {MIN_SIZE} bytes, got {size}")
    rng = random.Random(seed)
    head = _header(kind, size, rng) + rng.randbytes(16)
    tail = _trailer(kind)
    pool = _pool()
    parts = [head]
    left = size - len(head) - len(tail)
    while left > 0:
        length = min(left, _POOL // 2)
        start = rng.randrange(_POOL - length)
        parts.append(pool[start : start + length])
        left -= length
    parts.append(tail)
    return b"".join(parts)


def make_images(
    root: Path, count: int, size: int, *, kinds: Sequence[Kind] = KINDS, seed: int = 0
) -> list[Path]:
    """Write `count` images of exactly `size` bytes under `root`; their paths, in order."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        kind = kinds[index % len(kinds)]
        path = root / f"img-{index:07d}{SUFFIXES[kind]}"
        path.write_bytes(image_bytes(kind, size, seed * 1_000_003 + index))
        paths.append(path)
    return paths


def write_manifest(paths: Sequence[Path], manifest: Path, *, entries: int | None = None) -> Path:
    """A JSON lines manifest of `entries` items (default: one per path), ids ``b-0000000``…

    With more entries than paths, the paths repeat under distinct ids.
    """
    if not paths:
        raise ValueError("no images to list")
    total = len(paths) if entries is None else entries
    names = [str(path.absolute()).encode() for path in paths]
    with manifest.open("wb") as fh:
        batch: list[bytes] = []
        for index in range(total):
            path = names[index % len(names)]
            batch.append(orjson.dumps({"id": f"b-{index:07d}", "path": path.decode()}) + b"\n")
            if len(batch) >= 4096:
                fh.write(b"".join(batch))
                batch.clear()
        fh.write(b"".join(batch))
    return manifest
