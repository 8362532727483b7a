"""A PNG or JPEG cut short is rejected with its reason; padding and appended data are not.

Real files from Pillow (not the sniffable fakes of `tests.images`, whose bodies
are random bytes rather than an entropy-coded scan). Each case runs through
`validate.check` twice: with the file read whole (the prefetch path) and with
only its head read (the tail then comes from one pread).
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image

from ingest.errors import ManifestError
from ingest.item import Item, Source
from ingest.prefetch import Prefetch
from ingest.sniff import TAIL_BYTES, ImageType
from ingest.validate import Limits, check

ALL = Limits(formats=frozenset(ImageType), max_size=None)


def picture(fmt: str, side: int) -> bytes:
    """A real, decodable noisy picture (noise so the compressed body is large)."""
    rng = random.Random(side)
    image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


JPEG = picture("JPEG", 160)  # ~40 KB: its tail is scan data once cut
PNG = picture("PNG", 100)
SMALL_JPEG = picture("JPEG", 8)  # under TAIL_BYTES: the whole file is the tail


def checked(tmp_path: Path, data: bytes, *, whole: bool) -> Source | ManifestError:
    path = tmp_path / "x.img"
    path.write_bytes(data)
    item = Item(key="x", path=path, line=3)
    return check(item, ALL, prefetch=Prefetch() if whole else None)


def test_the_pictures_are_what_the_cases_need() -> None:
    assert 4 * TAIL_BYTES < len(JPEG) < Prefetch().max_file // 2
    assert len(SMALL_JPEG) < TAIL_BYTES
    assert JPEG.endswith(b"\xff\xd9") and PNG.endswith(b"IEND\xaeB`\x82")


@pytest.mark.parametrize("whole", [True, False], ids=["read-whole", "head-and-tail"])
@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (JPEG[: len(JPEG) // 2], "truncated JPEG"),
        (JPEG[:-2], "truncated JPEG"),  # only the EOI marker missing
        (SMALL_JPEG[: len(SMALL_JPEG) - 40], "truncated JPEG"),
        (PNG[: len(PNG) // 2], "truncated PNG"),
        (PNG[:-12], "truncated PNG"),  # only the IEND chunk missing
    ],
    ids=["jpeg-half", "jpeg-no-eoi", "small-jpeg-cut", "png-half", "png-no-iend"],
)
def test_a_cut_file_is_rejected_with_its_reason(
    tmp_path: Path, data: bytes, reason: str, whole: bool
) -> None:
    result = checked(tmp_path, data, whole=whole)
    assert isinstance(result, ManifestError), result
    assert result.reason.startswith(reason), result.reason
    assert "cut short" in result.reason and result.reason.endswith(str(tmp_path / "x.img"))
    assert result.line == 3


@pytest.mark.parametrize("whole", [True, False], ids=["read-whole", "head-and-tail"])
@pytest.mark.parametrize(
    "data",
    [
        JPEG,
        PNG,
        SMALL_JPEG,
        JPEG + b"\x00" * 1000,  # padding after EOI, as cameras write it
        JPEG + b"\x00" * (3 * TAIL_BYTES),  # padding longer than the tail
        PNG + b"\x00" * 100,
        # A motion photo: a video appended after the EOI (here 64 KiB of random bytes).
        JPEG + random.Random(5).randbytes(64 * 1024),
    ],
    ids=["jpeg", "png", "small-jpeg", "jpeg-padded", "jpeg-long-padding", "png-padded", "motion"],
)
def test_whole_padded_and_appended_files_pass(tmp_path: Path, data: bytes, whole: bool) -> None:
    assert isinstance(checked(tmp_path, data, whole=whole), Source)
