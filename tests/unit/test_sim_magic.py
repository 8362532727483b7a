"""The emulator's magic-byte table (`ingest.sim.magic`) and the client's (`ingest.sniff`) agree.

The two tables are written apart, so that a client sniffing bug cannot be
matched by the emulator. These tests hold them to each other on real bytes:
files encoded by Pillow (an encoder neither table was written from, whose own
reading of each file is the third opinion on what it is), the sniffable
images `tests/images.py` makes for every other test, and the corpus of good
and bad files in `tests/corpus/files`. Both must name the same type for every
image, and both must refuse what is not one.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from ingest.sim.magic import ImageFormat, identify
from ingest.sniff import SNIFF_BYTES, ImageType, sniff
from tests.images import KINDS, MIN_SIZE, Kind, image_bytes

CORPUS = Path(__file__).parent.parent / "corpus" / "files"


def client(body: bytes) -> str | None:
    """The MIME type the client gives a file with these bytes (it reads `SNIFF_BYTES`)."""
    kind = sniff(body[:SNIFF_BYTES])
    return None if kind is None else kind.mime


def emulator(body: bytes) -> str | None:
    """The MIME type the emulator gives an upload with these bytes (it has the whole body)."""
    kind = identify(body)
    return None if kind is None else kind.mime


def picture(mode: str = "RGB", size: tuple[int, int] = (24, 16)) -> Image.Image:
    """A small picture with some detail, so encoders do not collapse it to nothing."""
    im = Image.linear_gradient("L").resize(size).convert(mode)
    im.putpixel((1, 1), 0)
    return im


def encoded(fmt: str, mode: str = "RGB", **options: object) -> bytes:
    out = io.BytesIO()
    picture(mode).save(out, fmt, **options)
    return out.getvalue()


def animated(fmt: str) -> bytes:
    out = io.BytesIO()
    frames = [picture("RGB"), picture("RGB").rotate(90), picture("RGB").rotate(180)]
    frames[0].save(out, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


def with_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "ingest tests"  # Make
    return encoded("JPEG", exif=exif.tobytes())


def with_major_brand(body: bytes, brand: bytes) -> bytes:
    """`body` (an ISO BMFF file) with another major brand; its compatible brands unchanged."""
    assert body[4:8] == b"ftyp"
    return body[:8] + brand + body[12:]


def avif_major_mif1() -> bytes:
    """An AVIF whose major brand is the generic HEIF "mif1", "avif" only among compatible brands.

    The AVIF specification asks for "avif" among the compatible brands and
    leaves the major brand to the writer: this is a valid AVIF (Pillow, through
    libavif, decodes it below).
    """
    return with_major_brand(encoded("AVIF", quality=50), b"mif1")


PILLOW_IMAGES: dict[str, Callable[[], bytes]] = {
    "png-rgb": lambda: encoded("PNG"),
    "png-rgba": lambda: encoded("PNG", "RGBA"),
    "png-palette": lambda: encoded("PNG", "P"),
    "png-16-bit": lambda: encoded("PNG", "I;16"),
    "jpeg-baseline": lambda: encoded("JPEG"),
    "jpeg-progressive": lambda: encoded("JPEG", progressive=True),
    "jpeg-grey": lambda: encoded("JPEG", "L"),
    "jpeg-cmyk": lambda: encoded("JPEG", "CMYK"),
    "jpeg-exif": with_exif,
    "gif-87a": lambda: encoded("GIF", "L"),
    "gif-89a-transparent": lambda: encoded("GIF", "P", transparency=0),
    "gif-animated": lambda: animated("GIF"),
    "webp-lossy": lambda: encoded("WEBP"),
    "webp-lossless": lambda: encoded("WEBP", lossless=True),
    "webp-alpha": lambda: encoded("WEBP", "RGBA"),
    "webp-animated": lambda: animated("WEBP"),
    "tiff-little-endian": lambda: encoded("TIFF"),
    "tiff-big-endian": lambda: encoded("TIFF", "I;16B"),
    "tiff-lzw": lambda: encoded("TIFF", compression="tiff_lzw"),
    "bmp-rgb": lambda: encoded("BMP"),
    "bmp-palette": lambda: encoded("BMP", "P"),
    "avif": lambda: encoded("AVIF", quality=50),
    "avif-alpha": lambda: encoded("AVIF", "RGBA", quality=50),
    "avif-major-brand-mif1": avif_major_mif1,
}

# Formats Pillow writes that no provider takes: neither table may call them an image.
PILLOW_NOT_TAKEN = ("ICO", "PPM", "TGA", "QOI", "PCX", "JPEG2000", "SGI", "DDS", "ICNS", "EPS")


@pytest.mark.parametrize("name", sorted(PILLOW_IMAGES))
def test_both_tables_name_the_type_pillow_reads(name: str) -> None:
    body = PILLOW_IMAGES[name]()
    # Pillow's own plugins: pillow-heif, once `--convert` registered it in this process,
    # claims every HEIF brand (an AVIF with major brand mif1 too) and lacks AV1.
    Image.init()
    own = [name for name in Image.OPEN if name != "HEIF"]
    with Image.open(io.BytesIO(body), formats=own) as im:
        im.load()  # really decodable, not just a plausible header
        assert im.format is not None
        expected = Image.MIME[im.format]
    assert (client(body), emulator(body)) == (expected, expected)


@pytest.mark.parametrize("fmt", PILLOW_NOT_TAKEN)
def test_both_tables_refuse_formats_no_provider_takes(fmt: str) -> None:
    body = encoded(fmt)
    with Image.open(io.BytesIO(body)) as im:
        assert im.format == fmt
    assert (client(body), emulator(body)) == (None, None)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [MIN_SIZE, 1000, 70_000])
def test_both_tables_take_the_test_images(kind: Kind, size: int) -> None:
    expected = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}[kind]
    for seed in range(3):
        body = image_bytes(kind, size, seed)
        assert (client(body), emulator(body)) == (expected, expected)


def test_an_iphone_heic_header_is_heic_to_both() -> None:
    # Pillow cannot write HEIC: the FileTypeBox and the next box header as iOS writes them.
    body = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00\x00\x0f\xf2meta"
    assert (client(body), emulator(body)) == ("image/heic", "image/heic")


@pytest.mark.parametrize(
    "path", sorted(p for p in CORPUS.iterdir() if p.is_file()), ids=lambda p: p.name
)
def test_both_tables_agree_on_the_corpus(path: Path) -> None:
    body = path.read_bytes()
    assert client(body) == emulator(body)


def test_the_corpus_has_images_and_non_images() -> None:
    verdicts = {emulator(p.read_bytes()) for p in CORPUS.iterdir() if p.is_file()}
    assert None in verdicts and len(verdicts) > 2


def test_the_two_tables_cover_the_same_formats() -> None:
    assert {(t.mime, t.ext) for t in ImageType} == {(f.mime, f.ext) for f in ImageFormat}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # RFC 9649: the chunk after "WEBP" is VP8, VP8L or VP8X; anything else is no WebP.
        (b"RIFF\x10\x00\x00\x00WEBPJUNK" + bytes(64), None),
        (b"RIFF\x10\x00\x00\x00WEBPVP8L" + bytes(64), "image/webp"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8X" + bytes(64), "image/webp"),
        # ISO/IEC 23008-12: "mif1" alone names no codec; an HEVC image brand makes it HEIC.
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1miaf" + bytes(64), None),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heix" + bytes(64), "image/heic"),
        # The HEVC brand sixth among the compatible ones (bytes 36-40: past a 32-byte head).
        (
            b"\x00\x00\x00\x28ftypmif1\x00\x00\x00\x00mif1miafMiHEMiPrMiHBheic" + bytes(64),
            "image/heic",
        ),
    ],
    ids=[
        "webp-junk-chunk",
        "webp-lossless",
        "webp-extended",
        "bare-mif1",
        "mif1-heix",
        "late-heic",
    ],
)
def test_both_tables_follow_the_specs_beyond_the_signature(
    body: bytes, expected: str | None
) -> None:
    assert (client(body), emulator(body)) == (expected, expected)
