"""The emulator's own reading of image bytes: which format a body is, from its signature.

Owns the emulated APIs' view of "is this an image, and of which type". It is
written from the formats' specifications, never from the client's
`ingest.sniff` (which the emulator must not import): a sniffing bug in the
client then shows up as an emulator refusal or a type mismatch in the tests,
instead of two copies of one table agreeing with each other.
`tests/unit/test_sim_magic.py` checks the two tables on real files.

Where each signature comes from:

    PNG    the 8-byte PNG signature 89 50 4E 47 0D 0A 1A 0A
           (PNG Specification, W3C / ISO/IEC 15948, "PNG signature")
    JPEG   the SOI marker FF D8, then the FF that opens the next marker
           (ITU-T T.81 | ISO/IEC 10918-1, Annex B, Table B.1 and "Markers")
    GIF    "GIF" and a version, "87a" or "89a"
           (GIF89a Specification, CompuServe 1990, section 17 "Header")
    WebP   "RIFF", a little-endian size, "WEBP", then the first chunk:
           "VP8 " (lossy), "VP8L" (lossless) or "VP8X" (extended)
           (RFC 9649, WebP Container Specification: "RIFF Header" and the
           simple and extended file formats)
    TIFF   "II" and 42 as a little-endian uint16, or "MM" and 42 big-endian
           (TIFF Revision 6.0, Adobe 1992, section 2 "Image File Header")
    BMP    "BM", the bfType of the BITMAPFILEHEADER
           (Microsoft Windows GDI documentation, BITMAPFILEHEADER)
    AVIF,  an ISO base media file starting with its FileTypeBox: a big-endian
    HEIC   uint32 size, "ftyp", the major brand, a minor version, then
           compatible brands to the end of the box (ISO/IEC 14496-12,
           "File Type Box"). A file is AVIF if its brands include "avif"
           (image) or "avis" (sequence) (AV1 Image File Format, AOM,
           "Brands"), and HEIC if they include an HEVC still-image brand
           "heic", "heix", "heim" or "heis" (ISO/IEC 23008-12, HEIF, Annex B).
           The generic HEIF brand "mif1" alone says no codec, so it is neither.

MIME types are the IANA registrations (image/png, image/jpeg, image/gif,
image/webp, image/tiff, image/bmp, image/avif, image/heic).
"""

from __future__ import annotations

import enum
import struct


class ImageFormat(enum.Enum):
    """An image format an emulated API may be asked to take, with its MIME type and extension.

    A second list beside the client's `ImageType` on purpose: a wrong MIME
    type there must not be copied here (the tests compare the two).
    """

    PNG = ("image/png", "png")
    JPEG = ("image/jpeg", "jpeg")
    GIF = ("image/gif", "gif")
    WEBP = ("image/webp", "webp")
    TIFF = ("image/tiff", "tiff")
    BMP = ("image/bmp", "bmp")
    AVIF = ("image/avif", "avif")
    HEIC = ("image/heic", "heic")

    @property
    def mime(self) -> str:
        return self.value[0]

    @property
    def ext(self) -> str:
        return self.value[1]


_PNG_SIGNATURE = bytes((0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A))
_JPEG_SOI = bytes((0xFF, 0xD8))
_GIF_VERSIONS = (b"87a", b"89a")
_WEBP_FIRST_CHUNKS = (b"VP8 ", b"VP8L", b"VP8X")
_TIFF_MAGIC = 42
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis"})


def identify(body: bytes) -> ImageFormat | None:
    """The format of an upload whose bytes are `body` (or its start), or None if not an image."""
    if body[:8] == _PNG_SIGNATURE:
        return ImageFormat.PNG
    if body[:2] == _JPEG_SOI and body[2:3] == b"\xff":
        return ImageFormat.JPEG
    if body[:3] == b"GIF" and body[3:6] in _GIF_VERSIONS:
        return ImageFormat.GIF
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP" and body[12:16] in _WEBP_FIRST_CHUNKS:
        return ImageFormat.WEBP
    if _is_tiff(body):
        return ImageFormat.TIFF
    if body[:2] == b"BM":
        return ImageFormat.BMP
    brands = _file_type_brands(body)
    if brands & _AVIF_BRANDS:
        return ImageFormat.AVIF
    if brands & _HEIC_BRANDS:
        return ImageFormat.HEIC
    return None


def _is_tiff(body: bytes) -> bool:
    if len(body) < 4:
        return False
    if body[:2] == b"II":
        return bool(struct.unpack_from("<H", body, 2)[0] == _TIFF_MAGIC)
    if body[:2] == b"MM":
        return bool(struct.unpack_from(">H", body, 2)[0] == _TIFF_MAGIC)
    return False


def _file_type_brands(body: bytes) -> frozenset[bytes]:
    """The major and compatible brands of a leading ISO BMFF FileTypeBox; empty if there is none."""
    if len(body) < 16 or body[4:8] != b"ftyp":
        return frozenset()
    (size,) = struct.unpack_from(">I", body, 0)
    if size < 16:  # too small for the box (0 and 1, "to the end" and 64-bit, are not used for it)
        return frozenset()
    end = min(size, len(body))
    compatible = (body[at : at + 4] for at in range(16, end - 3, 4))
    return frozenset((body[8:12], *compatible))
