"""Fake but sniffable images for tests and benchmarks.

A generated file starts with its format's real signature and header (PNG
signature and IHDR chunk, JPEG SOI and JFIF APP0, WebP RIFF/WEBP/VP8 chunk
headers), so `ingest.sniff` and providers' magic-byte checks accept it; the
rest is deterministic pseudo-random bytes. The same (kind, size, seed) always
gives the same bytes and different seeds give different bytes. The files are
not decodable pictures.

Speed: `random.randbytes` makes only ~100 MB/s, so bodies are stitched from
slices of one cached random pool at seed-chosen offsets and lengths. The
slices never repeat with a power-of-two period, so a transfer bug that sends
a chunk twice or skips one still changes the bytes.
"""

from __future__ import annotations

import functools
import math
import random
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import orjson

Kind = Literal["png", "jpeg", "webp"]
KINDS: tuple[Kind, ...] = ("png", "jpeg", "webp")
EXTENSIONS: dict[Kind, str] = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
MIN_SIZE = 64

_POOL_SIZE = (1 << 20) + 4099


@functools.cache
def _pool() -> memoryview:
    return memoryview(random.Random(0x1D6E57).randbytes(_POOL_SIZE))


def image_bytes(kind: Kind, size: int, seed: int) -> bytes:
    """The exact bytes `make_image` writes."""
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} bytes, got {size}")
    rng = random.Random(seed)
    width, height = rng.randrange(64, 4096), rng.randrange(64, 4096)
    if kind == "png":
        ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr
        head += struct.pack(">I", zlib.crc32(ihdr))
        tail = b"IEND\xae\x42\x60\x82"  # the IEND chunk without its length
        data_len = size - len(head) - 8 - 4 - 4 - len(tail)
        head += struct.pack(">I", data_len) + b"IDAT"
        body = _body(rng, data_len)
        return b"".join((head, body, rng.randbytes(4), struct.pack(">I", 0), tail))
    if kind == "jpeg":
        head = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        return b"".join((head, _body(rng, size - len(head) - 2), b"\xff\xd9"))
    if kind == "webp":
        head = b"RIFF" + struct.pack("<I", size - 8) + b"WEBPVP8 " + struct.pack("<I", size - 20)
        head += b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", width, height)
        return head + _body(rng, size - len(head))
    raise ValueError(f"unknown image kind {kind!r}; use one of {', '.join(KINDS)}")


def _body(rng: random.Random, n: int) -> bytes:
    nonce = rng.randbytes(min(n, 16))  # distinct even when pool slices coincide
    parts: list[bytes | memoryview] = [nonce]
    left = n - len(nonce)
    pool = _pool()
    while left > 0:
        length = min(left, rng.randrange(4093, 65521))
        start = rng.randrange(_POOL_SIZE - length)
        parts.append(pool[start : start + length])
        left -= length
    return b"".join(parts)


def make_image(path: Path, kind: Kind, size: int, seed: int) -> None:
    """Write a `kind` image of exactly `size` (>= 64) bytes to `path`, content fixed by `seed`."""
    path.write_bytes(image_bytes(kind, size, seed))


def touch(root: Path, *names: str) -> None:
    """Create each of `names` under `root` (folders as needed), one byte each: not images."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def make_dataset(
    root: Path,
    n: int,
    *,
    min_size: int = 1024,
    max_size: int = 2 * 1024 * 1024,
    seed: int = 0,
) -> list[Path]:
    """Write `n` images under `root` (created if needed); return their paths in order.

    Kinds cycle png, jpeg, webp; sizes are log-uniform in [min_size, max_size],
    so the expected total is about n * (max_size - min_size) / ln(max_size / min_size)
    (~275 MB for 1,000 files at the defaults: pass a smaller max_size when the
    bytes do not matter). Names are ``img-000000.png`` and so on.
    """
    if not MIN_SIZE <= min_size <= max_size:
        raise ValueError(f"need {MIN_SIZE} <= min_size <= max_size, got {min_size}, {max_size}")
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    low, high = math.log(min_size), math.log(max_size)
    paths = []
    for index in range(n):
        kind = KINDS[index % len(KINDS)]
        size = min(max_size, max(min_size, round(math.exp(rng.uniform(low, high)))))
        path = root / f"img-{index:06d}{EXTENSIONS[kind]}"
        make_image(path, kind, size, rng.getrandbits(64))
        paths.append(path)
    return paths


def write_jsonl_manifest(
    paths: Iterable[Path], manifest_path: Path, *, ids: bool = True, captions: bool = False
) -> Path:
    """Write a JSON lines manifest listing `paths`; return `manifest_path`.

    Paths under the manifest's directory are written relative to it (as the
    reader resolves them), others absolute. Ids are ``item-000000`` and so on.
    """
    base = manifest_path.parent.absolute()
    with manifest_path.open("wb") as fh:
        for index, path in enumerate(paths):
            full = path.absolute()
            written = full.relative_to(base).as_posix() if full.is_relative_to(base) else str(full)
            entry: dict[str, str] = {"path": written}
            if ids:
                entry["id"] = f"item-{index:06d}"
            if captions:
                entry["caption"] = f"test image {index} ({full.stem})"
            fh.write(orjson.dumps(entry) + b"\n")
    return manifest_path
