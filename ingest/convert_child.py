"""The Pillow side of `--convert`: one image decoded and encoded, and the process that does it.

Owns the Pillow work of one conversion (`pillow`, `open_image`, `need_of`,
`target_type`, `encode`, and `cut_short`: a HEIC, AVIF, TIFF or BMP whose
header reads but whose image data the file cut short, found from where its
header places that data (``iloc`` box, strip or tile offsets, rows), not by
decoding; imported by `ingest.convert` for `validate`'s header reads
too, so validate predicts the run's failure in its words) and `main`, the
converter process `ingest.convert_pool` starts, one per conversion at once.

How it works: the parent and the child exchange frames (an 8-byte length,
then a pickle) over the child's stdin and a duplicate of its stdout (its
fd 1 then points at stderr, so nothing a library prints can break a frame).
The child first says ``ready`` (or why it cannot convert: Pillow missing),
then serves one job at a time: ``open`` (a path it reads, or the bytes of a
member or a fetched file, raw after the frame as the converted bytes come
back: the parent copies them into no pickle; with the size checked, and the
job's settings: target types, quality, max side) → it reads the header only
(`Image.open` is lazy) and answers ``need`` (pixels and the bytes decoding
will take); the parent takes those from its memory budget and says ``go``
(or ``skip``) → ``done`` with the converted bytes' type, sha256 and length,
followed by those bytes raw (outside the pickle: the parent copies them to
its spool file in chunks, never holding them whole), or ``fail`` with a
one-line reason.

Priority: before its first import the child puts itself (and so every
thread it starts later: libheif decodes in threads of its own) under
Linux's ``SCHED_IDLE`` policy (`lower_priority`; where that is refused or
absent, `NICE` is added to its niceness instead). What that buys over a
nice value (man 7 sched, "SCHED_IDLE"; kernel/sched/fair.c): a normal task
that wakes preempts a ``SCHED_IDLE`` one at once
(`check_preempt_wakeup_fair`: "Idle tasks are by definition preempted by
non-idle tasks"), where a niced task may keep the CPU to the end of its
slice; and a CPU running only ``SCHED_IDLE`` tasks counts as idle when a
woken task picks its CPU (`sched_idle_cpu` in `select_idle_sibling`), so
the event loop, the sink or the signer waking goes straight onto the core
a conversion holds. The child stays in the run's session (`convert_pool`):
with autogroup each session is one group, and the group's weight on a CPU
follows its tasks' weights there (`calc_group_shares`), so a core running
only a converter gives the run's group almost no weight against other
sessions either; the conversions take what nobody else wants
(benchmarks/README.md, Convert).

Invariants: the child imports nothing of `ingest` beyond this module and
holds no state between jobs but its Pillow import; it ends when its stdin
ends (the parent closed it, or the parent died: a SIGKILLed run leaves no
converter process behind) or after `IDLE_S` without a job; a decoder's exception is that job's ``fail``,
never the child's end; conversion is deterministic (same bytes and
settings, same output).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import select
import struct
import sys
import warnings
from collections.abc import Iterator
from typing import IO, Any, Protocol

NICE = 10  # added to the child's niceness where SCHED_IDLE is refused (see the module)
IDLE_S = 120.0  # without a job this long, it ends (`ingest.convert_pool` reuses it within 10 s)
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_HEADER = struct.Struct("<Q")


def pillow() -> Any:
    """Pillow's `Image` with HEIC (and AVIF) openers registered; ImportError without Pillow."""
    from PIL import Image

    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:
        pass  # HEIC then fails per item: "cannot identify image file"
    with contextlib.suppress(ImportError):  # Pillow < 11: AVIF through the plugin
        import pillow_avif  # type: ignore[import-not-found]  # noqa: F401
    Image.MAX_IMAGE_PIXELS = None  # the budget decides, per item, with its own message
    return Image


def open_image(image: Any, data: bytes, image_type: str) -> Any:
    """Pillow's (lazy) image of `data`; an AVIF only through an AVIF plugin (pillow-heif claims
    every HEIF brand, an AVIF with major brand ``mif1`` too, and has no AV1 decoder)."""
    formats = ["AVIF"] if image_type == "avif" else None
    return image.open(io.BytesIO(data), formats=formats)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Pillow's (and pillow-heif's) warnings about one image dropped, for `validate`'s header
    reads in the parent (a converter process's stderr is /dev/null): printed raw on stderr
    (``TiffImagePlugin.py:982: UserWarning: Corrupt EXIF data…``), they named no file; the
    image converts, or fails with its own reason, as it would without them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"(PIL|pillow_heif)(\.|$)")
        yield


def need_of(im: Any, data: bytes) -> int:
    """Bytes a conversion of `im` holds at its peak: decoded, one converted copy, the original."""
    width, height = im.size
    return int(width * height * 4 * 2 + len(data))


def target_type(mode: str, info: dict[str, Any], formats: frozenset[str]) -> str:
    """``png`` for an image with alpha (or a provider without JPEG), ``jpeg`` otherwise."""
    alpha = mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in info)
    if "jpeg" not in formats or (alpha and "png" in formats):
        return "png"
    return "jpeg"


def encode(image: Any, im: Any, formats: frozenset[str], quality: int, max_side: int) -> Any:
    """`im` upright, within `max_side`, as (bytes, ``png`` or ``jpeg``)."""
    from PIL import ImageOps

    kind = target_type(im.mode, im.info, formats)
    icc = im.info.get("icc_profile")
    im = ImageOps.exif_transpose(im)  # a copy, turned upright; the EXIF is not carried over
    if max_side and max(im.size) > max_side:
        im.thumbnail((max_side, max_side), image.Resampling.LANCZOS)
    out = io.BytesIO()
    if kind == "png":
        im = im if im.mode in ("RGBA", "LA", "RGB", "L", "P") else im.convert("RGBA")
        im.save(out, "PNG", icc_profile=icc)
    else:
        im = im if im.mode in ("RGB", "L") else im.convert("RGB")
        im.save(out, "JPEG", quality=quality, icc_profile=icc)
    return out.getvalue(), kind


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """The ISO BMFF boxes in `data[start:end]`: (type, payload start, box end)."""
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        body = start + 8
        if size == 1 and body + 8 <= end:  # a 64-bit size follows
            (size,) = struct.unpack_from(">Q", data, body)
            body += 8
        elif size == 0:  # to the end
            size = end - start
        if size < body - start:
            return
        yield kind, body, min(start + size, end)
        start += size


def _uint(data: bytes, at: int, size: int) -> int:
    return int.from_bytes(data[at : at + size], "big") if size else 0


def cut_short(data: bytes, image_type: str) -> str | None:
    """Why an image whose header reads cannot decode: the header places its image data past
    the file's end (a file cut short, which the decoder finds only when it decodes); None
    when the data is within the file, for another type, or for a header this does not follow
    (the decoder decides). HEIC and AVIF: the item location box; TIFF: the first image's
    strips or tiles; BMP: its uncompressed rows (`_NEEDED`)."""
    needed_of = _NEEDED.get(image_type)
    try:
        needed = needed_of(data) if needed_of is not None else None
    except (StopIteration, IndexError, struct.error):
        return None
    if needed is None or needed <= len(data):
        return None
    return (
        f"damaged or truncated: its image data ends at byte {needed:,}, the file at {len(data):,}"
    )


def _heif_needed(data: bytes) -> int | None:
    """Where the last extent of an ``iloc`` box (ISO/IEC 14496-12 8.11.3) ends: libheif says
    "Extent in iloc box references data outside of file bounds" when it decodes."""
    meta = next((b, e) for kind, b, e in _boxes(data, 0, len(data)) if kind == b"meta")
    at, end = next((b, e) for kind, b, e in _boxes(data, meta[0] + 4, meta[1]) if kind == b"iloc")
    version = data[at]
    sizes = data[at + 4] << 8 | data[at + 5]
    offset_size, length_size, base_size = sizes >> 12, sizes >> 8 & 15, sizes >> 4 & 15
    index_size = sizes & 15 if version in (1, 2) else 0
    id_size = 4 if version == 2 else 2
    count, at = _uint(data, at + 6, id_size), at + 6 + id_size
    needed = 0
    for _ in range(count):
        at += id_size
        method = _uint(data, at, 2) & 15 if version in (1, 2) else 0
        at += 2 if version in (1, 2) else 0
        reference, base = _uint(data, at, 2), _uint(data, at + 2, base_size)
        extents, at = _uint(data, at + 2 + base_size, 2), at + 4 + base_size
        for _ in range(extents):
            at += index_size
            offset = _uint(data, at, offset_size)
            length = _uint(data, at + offset_size, length_size)
            at += offset_size + length_size
            if method == 0 and reference == 0:  # in this file, at an offset
                needed = max(needed, base + offset + length)
        if at > end:
            return None  # a box this check does not follow
    return needed


_TIFF_SIZES = {3: 2, 4: 4}  # SHORT, LONG: the types of offsets and byte counts (TIFF 6.0, p. 15)
_TIFF_PAIRS = ((273, 279), (324, 325))  # StripOffsets/StripByteCounts, TileOffsets/TileByteCounts


def _tiff_needed(data: bytes) -> int | None:
    """Where the first image's last strip or tile ends (TIFF 6.0, sections 2, 3 and 15: each
    strip is StripByteCounts bytes at its StripOffsets, as libtiff reads one). Pillow decodes
    the first image only; a BigTIFF, or a tag outside the file, is left to the decoder."""
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(data[:4])
    if order is None:
        return None
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    (count,) = struct.unpack_from(order + "H", data, ifd)
    tags: dict[int, list[int]] = {}
    for at in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind, n = struct.unpack_from(order + "HHI", data, at)
        size = _TIFF_SIZES.get(kind)
        if size is None or not any(tag in pair for pair in _TIFF_PAIRS):
            continue
        where = at + 8 if n * size <= 4 else struct.unpack_from(order + "I", data, at + 8)[0]
        if where + n * size > len(data):
            return None
        tags[tag] = list(struct.unpack_from(f"{order}{n}{'H' if size == 2 else 'I'}", data, where))
    for offsets, counts in _TIFF_PAIRS:
        if tags.get(offsets) and len(tags.get(counts, ())) == len(tags[offsets]):
            return max(o + c for o, c in zip(tags[offsets], tags[counts], strict=True))
    return None


def _bmp_needed(data: bytes) -> int | None:
    """Where an uncompressed BMP's rows end: bfOffBits, then |height| rows of width x bit
    count bits, each padded to 4 bytes (Microsoft's BITMAPINFOHEADER page, "Calculating
    Surface Stride"), the bytes Pillow's raw decoder reads; compressed (RLE, JPEG, PNG)
    data is left to the decoder."""
    if data[:2] != b"BM":
        return None
    offset, header = struct.unpack_from("<I", data, 10)[0], struct.unpack_from("<I", data, 14)[0]
    if header == 12:  # BITMAPCOREHEADER (OS/2): 16-bit sizes, no compression
        width, height, _, bits = struct.unpack_from("<HHHH", data, 18)
        compression = 0
    elif header >= 40:  # BITMAPINFOHEADER and its successors
        width, height, _, bits, compression = struct.unpack_from("<iiHHI", data, 18)
    else:
        return None
    if compression not in (0, 3, 6):  # BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS: rows as they are
        return None
    return int(offset + (width * bits + 31) // 32 * 4 * abs(height))


_NEEDED = {"heic": _heif_needed, "avif": _heif_needed, "tiff": _tiff_needed, "bmp": _bmp_needed}


def reason(exc: BaseException) -> str:
    """A decoder's exception as one short line."""
    if type(exc).__name__ == "UnidentifiedImageError":  # its text names a BytesIO
        return "damaged or truncated: its decoder cannot read it"
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 160 else text[:159] + "…"


class Writer(Protocol):
    """Where frames go: the child's stdout, or the parent's end of its stdin
    (`convert_pool._Pipe`)."""

    def write(self, data: bytes, /) -> object: ...
    def flush(self) -> object: ...


class Reader(Protocol):
    """Where frames come from (`read` returns fewer bytes only at the end)."""

    def read(self, n: int, /) -> bytes: ...


def send(out: Writer, message: tuple[Any, ...], raw: bytes = b"") -> None:
    """A frame of `message`, then `raw` as it is (its length is in `message`)."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_HEADER.pack(len(body)))
    out.write(body)
    if raw:
        out.write(raw)
    out.flush()


def receive(source: Reader) -> tuple[Any, ...] | None:
    """The next frame, or None at the end of the stream (a frame cut short is an end too)."""
    head = source.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (length,) = _HEADER.unpack(head)
    body = source.read(length)
    if len(body) < length:
        return None
    message: tuple[Any, ...] = pickle.loads(body)  # from the parent that started this process
    return message


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def serve(source: IO[bytes], out: IO[bytes]) -> None:
    """Jobs until `source` ends or none comes for `IDLE_S` (see the module)."""
    try:
        image = pillow()
    except ImportError as exc:
        send(out, ("fail", f"Pillow cannot be imported ({exc})"))
        return
    send(out, ("ready",))
    while select.select([source], [], [], IDLE_S)[0] and (job := receive(source)) is not None:
        _, path, sent, size, image_type, exts, quality, side = job  # sent: raw bytes following
        formats = frozenset(exts.split(","))
        try:
            data = source.read(sent) if sent is not None else _read(path)
        except OSError as exc:
            send(out, ("fail", f"cannot read it ({exc.strerror or exc})"))
            continue
        if len(data) != size:
            send(out, ("fail", f"the file changed since it was checked ({len(data)} bytes)"))
            continue
        try:
            with open_image(image, data, image_type) as im:
                if (short := cut_short(data, image_type)) is not None:
                    send(out, ("fail", short))  # what `validate` says of it too (`ingest.convert`)
                    continue
                send(out, ("need", *im.size, need_of(im, data)))
                answer = receive(source)
                if answer is None:
                    return
                if answer[0] != "go":
                    continue
                converted, kind = encode(image, im, formats, quality, side)
        except Exception as exc:  # decoders raise many types (OSError, ValueError, SyntaxError)
            send(out, ("fail", reason(exc)))
            continue
        digest = hashlib.sha256(converted).hexdigest()
        send(out, ("done", kind, digest, len(converted)), converted)
        del data, converted


def lower_priority() -> str:
    """This process under ``SCHED_IDLE``, else niced by `NICE` (see the module): which one."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or refused (a seccomp filter, a sandbox)
        with contextlib.suppress(OSError):
            os.nice(NICE)
        return "nice"
    return "idle"


def main() -> None:
    """The converter process (see the module)."""
    lower_priority()
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a library's print goes to stderr, not into a frame
    with contextlib.suppress(BrokenPipeError):  # the parent is gone
        serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
