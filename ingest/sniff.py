"""Image type detection from a file's first bytes (never from its name).

Owns the closed set of image formats `ingest` knows and their magic numbers.
AVIF and HEIC are ISO base media files, told apart by the brands of their
leading ``ftyp`` box. `SNIFF_BYTES` are enough to tell the type (an ``ftyp``
box with up to 12 compatible brands).

What each type needs beyond its signature:

    WebP   "RIFF", a size, "WEBP" and then the first chunk, "VP8 " (lossy),
           "VP8L" (lossless) or "VP8X" (extended): RFC 9649, WebP Container
           Specification, "RIFF Header" and "Simple File Format" / "Extended
           File Format". A RIFF/WEBP header with another chunk is not WebP.
    HEIC   an HEVC still-image brand, "heic", "heix", "heim" or "heis", as the
           major brand or among the compatible ones: ISO/IEC 23008-12 (HEIF),
           Annex B (brands) and the image/heic registration there. The generic
           HEIF brand "mif1" names no codec (a JPEG, AV1 or uncompressed HEIF
           carries it too), so alone it is not HEIC.

Also owns the one cheap completeness check, `truncation`: a PNG or JPEG whose
last `TAIL_BYTES` (one ``pread``) lack its end marker was cut short (a copy
that stopped, a half-written download). Padding after the marker, as cameras
and editors leave it, is allowed. A JPEG with data appended after its EOI
(Google and Samsung motion photos carry a video there, megabytes of it) is
told from a cut one by what its tail holds: a cut one ends inside the
entropy-coded scan, where every ``FF`` byte is followed by ``00`` (stuffing)
or ``D0``–``D7`` (restart markers); appended data has other ``FF xx`` pairs.

The emulator keeps its own table (`ingest.sim.magic`, from the specifications)
so that it cannot agree with a mistake here; tests compare the two.
"""

from __future__ import annotations

import enum

SNIFF_BYTES = 64
"""How many leading bytes `sniff` needs to decide."""

TAIL_BYTES = 4096
"""How many trailing bytes `truncation` looks at."""

_JPEG_EOI = b"\xff\xd9"
_PNG_IEND = b"IEND\xaeB`\x82"  # the IEND chunk's type and its (fixed) CRC
_PADDING = frozenset(b"\x00\xff\r\n \t")
_IN_SCAN_AFTER_FF = frozenset({0x00, *range(0xD0, 0xD8)})


class ImageType(enum.Enum):
    """An image format, with its MIME type and canonical file extension."""

    PNG = ("image/png", "png")
    JPEG = ("image/jpeg", "jpeg")
    WEBP = ("image/webp", "webp")
    GIF = ("image/gif", "gif")
    AVIF = ("image/avif", "avif")
    HEIC = ("image/heic", "heic")
    TIFF = ("image/tiff", "tiff")
    BMP = ("image/bmp", "bmp")

    @property
    def mime(self) -> str:
        return self.value[0]

    @property
    def ext(self) -> str:
        return self.value[1]


def sniff(head: bytes) -> ImageType | None:
    """The image type of a file whose first bytes are `head`, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ImageType.PNG
    if head.startswith(b"\xff\xd8\xff"):
        return ImageType.JPEG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and head[12:16] in _WEBP_FIRST_CHUNKS:
        return ImageType.WEBP
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return ImageType.GIF
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return ImageType.TIFF
    if head[:2] == b"BM":
        return ImageType.BMP
    if head[4:8] == b"ftyp":
        brands = {head[8:12], *_compatible_brands(head)}
        if not _AVIF_BRANDS.isdisjoint(brands):
            return ImageType.AVIF
        if not _HEIC_BRANDS.isdisjoint(brands):
            return ImageType.HEIC
    return None


_WEBP_FIRST_CHUNKS = (b"VP8 ", b"VP8L", b"VP8X")  # RFC 9649, "RIFF Header"
_AVIF_BRANDS = frozenset({b"avif", b"avis"})  # AV1 Image File Format (AOM), "Brands"
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis"})  # ISO/IEC 23008-12, Annex B


# The generic HEIF structural brands: ISO/IEC 23008-12, 10.2 ("mif1", "mif2": an image) and
# 10.3 ("msf1": an image sequence). They name no codec, so alone they are no type here.
_GENERIC_HEIF = {b"mif1": "image", b"mif2": "image", b"msf1": "image sequence"}


def generic_heif(head: bytes) -> str | None:
    """ "image" or "image sequence" for an ``ftyp`` with a generic HEIF brand only, else None.

    For messages about a file `sniff` does not take (it has no HEIC or AVIF brand).
    """
    if head[4:8] != b"ftyp":
        return None
    brands = [head[8:12], *sorted(_compatible_brands(head))]
    return next((_GENERIC_HEIF[b] for b in brands if b in _GENERIC_HEIF), None)


def _compatible_brands(head: bytes) -> set[bytes]:
    """The compatible brands of a leading ``ftyp`` box, as far as `head` holds them.

    AVIF asks for "avif" among these and leaves the major brand free (a
    file may lead with the generic HEIF brand "mif1").
    """
    end = min(len(head), int.from_bytes(head[:4], "big"))
    return {head[at : at + 4] for at in range(16, end - 3, 4)}


def truncation(kind: ImageType, tail: bytes, *, whole: bool) -> str | None:
    """Why a `kind` file whose last bytes are `tail` is cut short, or None if it looks whole.

    `tail` is the file's last `TAIL_BYTES` bytes (all of it when shorter);
    `whole` says it is the entire file. Only PNG and JPEG are checked.
    """
    if kind is ImageType.PNG:
        if _PNG_IEND in tail or _only_padding(tail, whole=whole):
            return None
        return "truncated PNG (no IEND chunk at its end: the file was cut short)"
    if kind is ImageType.JPEG:
        if _JPEG_EOI in tail or _only_padding(tail, whole=whole):
            return None
        if whole or _inside_scan(tail):
            return "truncated JPEG (no end-of-image marker: the file was cut short)"
    return None


def _only_padding(tail: bytes, *, whole: bool) -> bool:
    """Padding longer than the tail: the marker may lie before it (unknowable from here)."""
    return not whole and bool(tail) and _PADDING.issuperset(tail)


def _inside_scan(tail: bytes) -> bool:
    """Whether `tail` reads as JPEG entropy-coded data: no ``FF`` but stuffed or restarts."""
    at = tail.find(b"\xff")
    while 0 <= at < len(tail) - 1:
        if tail[at + 1] not in _IN_SCAN_AFTER_FF:
            return False
        at = tail.find(b"\xff", at + 2)
    return True
