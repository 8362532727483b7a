"""Opt-in conversion (`--convert`): an image of a type the provider does not take, made into one it does.

Owns the conversion of one checked `Source` (HEIC, AVIF, TIFF, BMP, GIF, ...)
into PNG (when it has alpha) or JPEG (otherwise, at `convert_quality`), with
its EXIF orientation applied and, with `--max-side N`, downscaled so neither
side exceeds N; and the pool, memory budget and spool that do it.

How it works: `Converter.convert` (called by `ingest.preparing` for a source
whose type the provider does not take) runs in a worker thread of a bounded pool
(`convert_workers`, a `CapacityLimiter`): threads, not processes, because
Pillow and libheif release the GIL while they decode and encode (measured:
2 threads convert HEIC and TIFF as fast as 2 processes on this machine, and
the event loop's worst gap stayed as without conversion), and a thread shares
the budget and the bytes without pickling them. Before decoding, a thread
reads the header only (`Image.open` is lazy), estimates the decoded pixels'
bytes and takes them from the `Budget` (`convert_memory_mib`), waiting while
other conversions hold it; an image that alone needs more is that item's
problem. The converted bytes are spooled to one file per item, without a
name (`ingest.spool`: a killed run leaves none behind), and the `Source` handed on names
that file (`member` None) under the original's key, mtime and a display name
with the new extension, so every reader of the data path (the PUT, a
multipart part, Scenario's base64 body) sends the converted bytes unchanged.
The spool file goes when the engine journals the item done or failed
(`forget`), the rest with the converter (`close`).

The provider's size limit applies to what is uploaded: an original of a type
converted passes the local checks whatever its size (`accepting` names those
types in `Capabilities.converts`), and the converted bytes are checked here;
one over the limit is the item's problem naming both sizes.

Invariants: conversion is deterministic (same bytes and settings, same
digest), so a resume converts the same way; the `Source` keeps the original's
size in `converted.size` (the journal's fingerprint is the original's, so a
re-run skips a done item without converting it again) and the converted
bytes' sha256 in `converted.digest` (journaled beside it); a failed
conversion is a `TransferError` (FAIL_ITEM, code ``convert_failed``) naming
the file, never a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import threading
from pathlib import PurePosixPath
from typing import Any, TypeVar

import anyio

from ingest.capabilities import Capabilities
from ingest.errors import Action, ConfigError, TransferError
from ingest.item import Converted, Item, Source
from ingest.journal.records import DoneRecord, UpRecord
from ingest.sniff import ImageType
from ingest.spool import Spool

R = TypeVar("R", UpRecord, DoneRecord)

# Every type `sniff` knows, Pillow decodes (HEIC through pillow-heif, AVIF built in
# from Pillow 11 or through pillow-avif-plugin).
DECODABLE = frozenset(ImageType)
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_EXT = {ImageType.JPEG: "jpg", ImageType.PNG: "png"}


def accepting(caps: Capabilities) -> Capabilities:
    """`caps` as the local checks see them with `--convert`: every decodable type passes (the
    ones converted, `converts`, whatever their size: the limit is the converted bytes')."""
    converts = DECODABLE - caps.formats
    return dataclasses.replace(caps, formats=caps.formats | DECODABLE, converts=converts)


def _pillow() -> Any:
    """Pillow with HEIC (and AVIF) openers registered; a clear error without the extra."""
    try:
        from PIL import Image
    except ImportError:
        raise ConfigError(
            "--convert needs Pillow: pip install 'ingest[convert]'", key="convert"
        ) from None
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:
        pass  # HEIC then fails per item: "cannot identify image file"
    with contextlib.suppress(ImportError):  # Pillow < 11: AVIF through the plugin
        import pillow_avif  # type: ignore[import-not-found]  # noqa: F401
    Image.MAX_IMAGE_PIXELS = None  # the budget below decides, per item, with its own message
    return Image


class Budget:
    """Bytes of decoded pixels that conversions in progress may hold (thread-safe, blocking)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._left = total
        self._cond = threading.Condition()

    def take(self, n: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._left >= n)
            self._left -= n

    def give_back(self, n: int) -> None:
        with self._cond:
            self._left += n
            self._cond.notify_all()

    @property
    def in_use(self) -> int:
        return self.total - self._left


def target_type(mode: str, info: dict[str, Any], formats: frozenset[ImageType]) -> ImageType:
    """PNG for an image with alpha (or a provider without JPEG), JPEG otherwise."""
    alpha = mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in info)
    if ImageType.JPEG not in formats or (alpha and ImageType.PNG in formats):
        return ImageType.PNG
    return ImageType.JPEG


class Converter:
    """Converts sources to a type in `formats`; one per run (it owns the spool folder)."""

    def __init__(
        self,
        formats: frozenset[ImageType],
        *,
        provider: str,
        quality: int = 90,
        max_side: int = 0,
        workers: int = 0,
        memory_bytes: int = 512 << 20,
        max_size: int | None = None,
    ) -> None:
        if not formats & {ImageType.PNG, ImageType.JPEG}:
            raise ConfigError(f"--convert: {provider} takes neither PNG nor JPEG", key="convert")
        if not 1 <= quality <= 100:
            raise ConfigError(
                f"convert_quality must be 1 to 100, not {quality}", key="convert_quality"
            )
        if max_side < 0:
            raise ConfigError(f"max_side must be 0 (off) or more, not {max_side}", key="max_side")
        self._image = _pillow()
        self.formats = formats
        self.provider = provider
        self.quality = quality
        self.max_side = max_side
        self.max_size = max_size
        self.budget = Budget(memory_bytes)
        # One core is left to the event loop by default: threads that release the GIL
        # took both cores of a 2-core machine from the uploads (benchmarks/README.md, Convert).
        self.workers = workers or max(1, (os.cpu_count() or 1) - 1)
        self._limiter = anyio.CapacityLimiter(self.workers)
        self._spool = Spool("ingest-convert-")  # files without names (`ingest.spool`)

    def needs(self, source: Source) -> bool:
        return source.image_type not in self.formats

    def plan(self, source: Source) -> ImageType | str:
        """What `source` would become, from its header only (for `validate`), or why not."""
        try:
            with self._open(_bytes_of(source), source.image_type) as im:
                return target_type(im.mode, im.info, self.formats)
        except Exception as exc:  # decoders raise many types
            return f"cannot convert {source.image_type.ext} ({_reason(exc)}): {source.item.where}"

    async def convert(self, source: Source) -> Source:
        """`source` converted and spooled, in a pool thread; `TransferError` if it cannot be."""
        return await anyio.to_thread.run_sync(self._convert, source, limiter=self._limiter)

    def forget(self, key: str) -> None:
        """The item is journaled done or failed: its spool file goes."""
        self._spool.forget(key)

    def close(self) -> None:
        self._spool.close()

    @property
    def spooled(self) -> int:
        """Items whose converted bytes are in the spool now."""
        return len(self._spool)

    def _open(self, data: bytes, image_type: ImageType) -> Any:
        """Pillow's image of `data`; an AVIF only through an AVIF plugin (pillow-heif claims
        every HEIF brand, an AVIF with major brand ``mif1`` too, and has no AV1 decoder)."""
        formats = ["AVIF"] if image_type is ImageType.AVIF else None
        return self._image.open(io.BytesIO(data), formats=formats)

    def _fail(self, source: Source, why: str) -> TransferError:
        return TransferError(
            f"cannot convert {source.image_type.ext}: {why}: {source.item.where}",
            action=Action.FAIL_ITEM,
            code="convert_failed",
            provider=self.provider,
            op="convert",
        )

    def _convert(self, source: Source) -> Source:
        try:
            data = _bytes_of(source)
        except OSError as exc:
            raise self._fail(source, f"cannot read it ({exc.strerror or exc})") from None
        if len(data) != source.size:
            raise self._fail(source, f"the file changed since it was checked ({len(data)} bytes)")
        try:
            with self._open(data, source.image_type) as im:
                width, height = im.size
                need = width * height * 4 * 2 + len(data)  # decoded, and one converted copy
                if need > self.budget.total:
                    raise self._fail(
                        source,
                        f"{width}x{height} pixels need about {-(-need >> 20)} MiB to convert, "
                        f"over convert_memory_mib ({self.budget.total >> 20}; or --max-side)",
                    )
                self.budget.take(need)
                try:
                    out, kind = self._encode(im)
                finally:
                    self.budget.give_back(need)
        except TransferError:
            raise
        except Exception as exc:  # decoders raise many types (OSError, ValueError, SyntaxError)
            raise self._fail(source, _reason(exc)) from None
        if self.max_size is not None and len(out) > self.max_size:  # what is uploaded
            raise self._fail(
                source,
                f"converted {kind.ext} is {len(out):,} bytes (from {source.size:,} bytes of "
                f"{source.image_type.ext}), over {self.provider}'s {self.max_size:,}-byte "
                "limit (try --max-side)",
            )
        digest = hashlib.sha256(out).hexdigest()
        # One file per key: two items may convert to the same bytes and must not share a file.
        path = self._spool.write(source.item.key, out)
        item = source.item
        name = PurePosixPath(item.display_name).stem + "." + _EXT[kind]
        return Source(
            item=dataclasses.replace(item, path=path, member=None, name=name, content_type=None),
            size=len(out),
            mtime_ns=source.mtime_ns,
            image_type=kind,
            converted=Converted(original=source.image_type, size=source.size, digest=digest),
        )

    def _encode(self, im: Any) -> tuple[bytes, ImageType]:
        from PIL import ImageOps

        kind = target_type(im.mode, im.info, self.formats)
        icc = im.info.get("icc_profile")
        im = ImageOps.exif_transpose(im)  # a copy, turned upright; the EXIF is not carried over
        if self.max_side and max(im.size) > self.max_side:
            im.thumbnail((self.max_side, self.max_side), self._image.Resampling.LANCZOS)
        out = io.BytesIO()
        if kind is ImageType.PNG:
            im = im if im.mode in ("RGBA", "LA", "RGB", "L", "P") else im.convert("RGBA")
            im.save(out, "PNG", icc_profile=icc)
        else:
            im = im if im.mode in ("RGB", "L") else im.convert("RGB")
            im.save(out, "JPEG", quality=self.quality, icc_profile=icc)
        return out.getvalue(), kind


def _bytes_of(source: Source) -> bytes:
    """The original's bytes: read ahead, a shard's member, or the file."""
    if source.body is not None:
        return source.body
    item: Item = source.item
    if item.member is not None:
        from ingest.manifest.packed.access import read_member

        return read_member(item.path, item.member, item.member.length)
    with item.path.open("rb") as fh:
        return fh.read()


def _reason(exc: BaseException) -> str:
    if type(exc).__name__ == "UnidentifiedImageError":  # its text names a BytesIO
        return "damaged or truncated: its decoder cannot read it"
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 160 else text[:159] + "…"


def converter_for(caps: Capabilities, provider: str, run: Any) -> Converter | None:
    """The run's converter with `--convert` (`run` is the `[run]` settings), else None."""
    if not run.convert:
        return None
    return Converter(
        caps.formats,
        provider=provider,
        quality=run.convert_quality,
        max_side=run.max_side,
        workers=run.convert_workers,
        memory_bytes=run.convert_memory_mib << 20,
        max_size=caps.max_size,
    )


def with_conversion(rec: R, source: Source | None) -> R:
    """`rec` (an ``up`` or ``done`` record) with ``cv``: "heic sha256:HEX" when converted."""
    if source is not None and source.converted is not None:
        rec["cv"] = f"{source.converted.original.ext} sha256:{source.converted.digest}"
    return rec
