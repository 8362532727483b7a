"""A bare generic-HEIF file is described as the HEIF image it is, not as "(a video?)".

`validate` said "an ISO media file of brand 'mif1' (a video?)" for an HEIF image whose
brands name no HEIC or AVIF codec (ISO/IEC 23008-12: "mif1" is the generic image brand).
"""

from __future__ import annotations

import pytest

from ingest.sniff import sniff
from ingest.validate import describe_content


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + bytes(4) + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + bytes(32)


@pytest.mark.parametrize(
    ("head", "kind", "brand"),
    [
        (ftyp(b"mif1", b"mif1", b"miaf"), "image", "mif1"),
        (ftyp(b"miaf", b"mif1"), "image", "miaf"),  # the generic brand among the compatible
        (ftyp(b"msf1", b"msf1"), "image sequence", "msf1"),
    ],
)
def test_a_generic_heif_file_is_named_an_heif_image(head: bytes, kind: str, brand: str) -> None:
    assert sniff(head) is None  # no HEIC or AVIF brand: no type ingest sends
    said = describe_content(head)
    assert said.startswith(f"an HEIF {kind} of brand {brand!r} with no HEIC or AVIF brand")
    assert "video" not in said


def test_another_iso_media_file_may_still_be_a_video() -> None:
    said = describe_content(ftyp(b"isom", b"isom", b"mp41"))
    assert said == "an ISO media file of brand 'isom' (a video?), not AVIF or HEIC"
