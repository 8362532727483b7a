"""Image type detection from a file's first bytes (never from its name).

Owns the closed set of image formats `ingest` knows and their magic numbers.
AVIF and HEIC are ISO base media files, told apart by the brands of their
leading ``ftyp`` box. `SNIFF_BYTES` are enough: validation reads no more.

The emulator keeps its own table (`ingest.sim.magic`, from the specifications)
so that it cannot agree with a mistake here; tests compare the two.
"""

from __future__ import annotations

import enum

SNIFF_BYTES = 32
"""How many leading bytes `sniff` needs to decide."""


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
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ImageType.WEBP
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return ImageType.GIF
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return ImageType.TIFF
    if head[:2] == b"BM":
        return ImageType.BMP
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _AVIF_BRANDS or not _AVIF_BRANDS.isdisjoint(_compatible_brands(head)):
            return ImageType.AVIF
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1"):
            return ImageType.HEIC
    return None


_AVIF_BRANDS = frozenset({b"avif", b"avis"})


def _compatible_brands(head: bytes) -> set[bytes]:
    """The compatible brands of a leading ``ftyp`` box, as far as `head` holds them.

    AVIF asks for "avif" among these and leaves the major brand free (a
    file may lead with the generic HEIF brand "mif1").
    """
    end = min(len(head), int.from_bytes(head[:4], "big"))
    return {head[at : at + 4] for at in range(16, end - 3, 4)}
