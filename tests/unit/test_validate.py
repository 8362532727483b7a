"""Tests for ingest.validate (local checks of one item) and the tests.images helper."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest

from ingest.errors import ManifestError
from ingest.item import Item, Source
from ingest.manifest import read_manifest
from ingest.sniff import SNIFF_BYTES, ImageType, sniff
from ingest.validate import Limits, check, check_many, describe_content
from tests.images import (
    KINDS,
    MIN_SIZE,
    Kind,
    image_bytes,
    make_dataset,
    make_image,
    write_jsonl_manifest,
)

MiB = 1024 * 1024
ALL = Limits(formats=frozenset(ImageType), max_size=None)
NOVITA = Limits(
    formats=frozenset({ImageType.PNG, ImageType.JPEG, ImageType.WEBP}),
    max_size=5 * MiB,
    provider="novita",
)


def item_for(path: Path, *, line: int = 7, content_type: str | None = None) -> Item:
    return Item(key=path.name, path=path, line=line, content_type=content_type)


def failure(result: Source | ManifestError) -> str:
    assert isinstance(result, ManifestError), result
    return result.reason


# --- good files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "image_type"),
    [("png", ImageType.PNG), ("jpeg", ImageType.JPEG), ("webp", ImageType.WEBP)],
)
def test_good_file_becomes_source(tmp_path: Path, kind: Kind, image_type: ImageType) -> None:
    path = tmp_path / f"x.{kind}"
    make_image(path, kind, 5000, seed=1)
    item = item_for(path)
    source = check(item, NOVITA)
    assert source == Source(
        item=item, size=5000, mtime_ns=path.stat().st_mtime_ns, image_type=image_type
    )
    assert isinstance(source, Source)
    assert source.content_type == image_type.mime


def test_type_comes_from_bytes_not_name(tmp_path: Path) -> None:
    path = tmp_path / "really_a_jpeg.png"
    make_image(path, "jpeg", 100, seed=1)
    result = check(item_for(path), NOVITA)
    assert isinstance(result, Source)
    assert result.image_type is ImageType.JPEG


def test_size_exactly_at_limit_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    make_image(path, "png", 1000, seed=1)
    assert isinstance(check(item_for(path), Limits(frozenset(ImageType), max_size=1000)), Source)


@pytest.mark.parametrize(
    "declared",
    ["image/jpeg", "image/jpg", "IMAGE/JPEG", " image/jpeg ", "image/jpeg; q=1", "image/pjpeg"],
)
def test_declared_type_that_agrees_is_fine(tmp_path: Path, declared: str) -> None:
    path = tmp_path / "a.jpg"
    make_image(path, "jpeg", 100, seed=1)
    assert isinstance(check(item_for(path, content_type=declared), NOVITA), Source)


# --- failures ----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    result = check(item_for(path, line=12), NOVITA)
    assert isinstance(result, ManifestError)
    assert result.reason == f"file not found: {path}"
    assert (result.source, result.line) == (str(path), 12)
    assert str(result) == f"{path}:12: file not found: {path}"


def test_error_source_can_name_the_manifest(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    result = check(item_for(path, line=3), NOVITA, source="m.jsonl")
    assert isinstance(result, ManifestError)
    assert str(result) == f"m.jsonl:3: file not found: {path}"


def test_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    assert failure(check(item_for(tmp_path / "file" / "a.png"), NOVITA)).startswith(
        "file not found:"
    )


def test_directory(tmp_path: Path) -> None:
    path = tmp_path / "dir.png"
    path.mkdir()
    assert failure(check(item_for(path), NOVITA)) == f"is a directory: {path}"


def test_named_pipe_is_not_opened_for_reading(tmp_path: Path) -> None:
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    # would block forever without O_NONBLOCK
    assert failure(check(item_for(path), NOVITA)) == f"not a regular file (a named pipe): {path}"


def test_permission_denied_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.png"
    make_image(path, "png", 100, seed=1)
    real_open = os.open

    def deny(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(file) == path:
            raise PermissionError(13, "Permission denied")
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    assert failure(check(item_for(path), NOVITA)) == f"permission denied: {path}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a mode-000 file")
def test_permission_denied_chmod(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    make_image(path, "png", 100, seed=1)
    path.chmod(0)
    assert failure(check(item_for(path), NOVITA)) == f"permission denied: {path}"


def test_read_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.png"
    make_image(path, "png", 100, seed=1)

    def broken(fd: int, n: int) -> bytes:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "read", broken)
    assert failure(check(item_for(path), NOVITA)) == f"cannot read {path}: Input/output error"


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"")
    assert failure(check(item_for(path), NOVITA)) == f"empty file (0 bytes): {path}"


def test_too_large(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    make_image(path, "png", int(7.3 * MiB), seed=1)
    assert failure(check(item_for(path), NOVITA)) == (
        f"too large: 7.3 MiB, over novita's 5.0 MiB limit: {path}"
    )
    anonymous = Limits(NOVITA.formats, max_size=5 * MiB)
    assert "over the provider's 5.0 MiB limit" in failure(check(item_for(path), anonymous))
    assert isinstance(check(item_for(path), Limits(NOVITA.formats, max_size=None)), Source)


def test_too_large_by_a_little_shows_bytes(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    make_image(path, "png", 5 * MiB + 1, seed=1)
    assert failure(check(item_for(path), NOVITA)) == (
        f"too large: 5,242,881 bytes, over novita's 5,242,880 bytes limit: {path}"
    )


def test_small_limits_in_bytes_and_kib(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    make_image(path, "png", 3000, seed=1)
    assert "too large: 2.9 KiB, over the provider's 1000 bytes limit" in failure(
        check(item_for(path), Limits(frozenset(ImageType), max_size=1000))
    )


@pytest.mark.parametrize(
    ("content", "looks_like"),
    [
        (b"hello world, this is not an image\n", "text ('hello world, this is no…')"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "a PDF document (%PDF)"),
        (b"PK\x03\x04\x14\x00\x00\x00", "a zip archive"),
        (b"<!DOCTYPE html><html><body>403", "an HTML page"),
        (b'<svg xmlns="http://www.w3.org/2000/svg">', "SVG or XML"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:", "a Git LFS pointer"),
        (b'{"error": "not found"}', "JSON text"),
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", "brand 'isom'"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "a RIFF WAVE file, not WebP"),
        (b"\x01\x02\x03\x04\x05\x06\x07\x08\x09", "binary data starting 01 02 03 04 05 06 07 08"),
        (b"caf\xc3", "text ('caf')"),  # a cut-off UTF-8 character at the end of the head
    ],
)
def test_not_an_image(tmp_path: Path, content: bytes, looks_like: str) -> None:
    path = tmp_path / "fake.png"
    path.write_bytes(content)
    reason = failure(check(item_for(path), ALL))
    assert reason.startswith("not an image (content looks like ")
    assert looks_like in reason
    assert reason.endswith(f"): {path}")


def test_describe_content_of_nothing() -> None:
    assert describe_content(b"") == "nothing (the file is empty)"


def test_unsupported_type(tmp_path: Path) -> None:
    path = tmp_path / "a.webp"
    make_image(path, "webp", 100, seed=1)
    limits = Limits(frozenset({ImageType.PNG, ImageType.JPEG}), max_size=None, provider="acme")
    assert failure(check(item_for(path), limits)) == (
        f"unsupported image type webp (acme accepts jpeg, png; --convert converts it): {path}"
    )
    anonymous = Limits(frozenset({ImageType.PNG}), max_size=None)
    assert "unsupported image type webp (accepted: png; --convert converts it)" in failure(
        check(item_for(path), anonymous)
    )


def test_unsupported_real_gif(tmp_path: Path) -> None:
    path = tmp_path / "a.gif"
    path.write_bytes(b"GIF89a" + bytes(40))
    assert (
        "unsupported image type gif (novita accepts jpeg, png, webp; --convert converts it)"
        in failure(check(item_for(path), NOVITA))
    )


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ("image/png", "declared image/png but the file is image/jpeg"),
        ("image/webp", "declared image/webp but the file is image/jpeg"),
        ("text/plain", "declared text/plain but the file is image/jpeg"),
        # a type name where a MIME type belongs (newcomer finding U8)
        (
            "jpeg",
            "declared content_type 'jpeg' is not a MIME type; expected one such as image/jpeg "
            "(the type of this file)",
        ),
        (
            " PNG ",
            "declared content_type 'PNG' is not a MIME type; expected one such as image/jpeg "
            "(the type of this file)",
        ),
    ],
)
def test_declared_type_mismatch(tmp_path: Path, declared: str, message: str) -> None:
    path = tmp_path / "a.png"
    make_image(path, "jpeg", 100, seed=1)
    assert failure(check(item_for(path, content_type=declared), NOVITA)) == f"{message}: {path}"


def test_only_the_head_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.png"
    make_image(path, "png", 100_000, seed=1)
    reads: list[int] = []
    real_read = os.read

    def spy(fd: int, n: int) -> bytes:
        reads.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", spy)
    assert isinstance(check(item_for(path), NOVITA), Source)
    assert reads == [SNIFF_BYTES]


def test_check_many_is_lazy_and_ordered(tmp_path: Path) -> None:
    good = tmp_path / "a.png"
    make_image(good, "png", 100, seed=1)
    it = check_many(
        [item_for(good, line=1), item_for(tmp_path / "b.png", line=2), item_for(good, line=3)],
        NOVITA,
        source="m.txt",
    )
    first = next(it)
    assert isinstance(first, Source)
    assert first.item.line == 1
    rest = list(it)
    assert [r.item.line if isinstance(r, Source) else r.line for r in rest] == [2, 3]
    assert isinstance(rest[0], ManifestError)
    assert rest[0].source == "m.txt"


def test_manifest_to_sources_end_to_end(tmp_path: Path) -> None:
    paths = make_dataset(tmp_path / "imgs", 9, min_size=100, max_size=10_000, seed=3)
    paths[4].unlink()
    manifest = write_jsonl_manifest(paths, tmp_path / "m.jsonl")
    results = list(check_many((r for r in read_manifest(manifest) if isinstance(r, Item)), NOVITA))
    assert [type(r).__name__ for r in results] == ["Source"] * 4 + ["ManifestError"] + [
        "Source"
    ] * 4
    assert [r.item.key for r in results if isinstance(r, Source)][:2] == [
        "item-000000",
        "item-000001",
    ]


# --- the tests.images helper -------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [MIN_SIZE, MIN_SIZE + 1, 1000, 70_000, 300_001])
def test_make_image_exact_size_and_sniffable(tmp_path: Path, kind: Kind, size: int) -> None:
    path = tmp_path / "x"
    make_image(path, kind, size, seed=size)
    data = path.read_bytes()
    assert len(data) == size
    detected = sniff(data[:SNIFF_BYTES])
    assert detected is not None
    assert detected.ext == kind


def test_image_headers_are_real() -> None:
    png = image_bytes("png", 200, 1)
    assert png[:16] == b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    assert png.endswith(b"\x00\x00\x00\x00IEND\xaeB`\x82")
    jpeg = image_bytes("jpeg", 200, 1)
    assert jpeg[:11] == b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
    assert jpeg.endswith(b"\xff\xd9")
    webp = image_bytes("webp", 200, 1)
    assert webp[:4] == b"RIFF"
    assert int.from_bytes(webp[4:8], "little") == 200 - 8
    assert webp[8:16] == b"WEBPVP8 "


def test_image_content_is_deterministic_and_distinct() -> None:
    assert image_bytes("png", 50_000, 1) == image_bytes("png", 50_000, 1)
    variants = {image_bytes("jpeg", size, seed) for seed in range(50) for size in (64, 100_000)}
    assert len(variants) == 100


def test_image_body_has_no_short_period() -> None:
    data = image_bytes("jpeg", 1 << 20, 7)
    for period in (4096, 8192, 16384, 65536, 131072):
        assert data[1000 : 1000 + 64] != data[1000 + period : 1000 + period + 64]


def test_image_too_small_or_unknown_kind() -> None:
    with pytest.raises(ValueError, match="at least 64"):
        image_bytes("png", 63, 1)
    with pytest.raises(ValueError, match="unknown image kind"):
        image_bytes("gif", 100, 1)  # type: ignore[arg-type]


def test_make_dataset_mixes_kinds_and_spreads_sizes(tmp_path: Path) -> None:
    paths = make_dataset(tmp_path / "ds", 300, min_size=1024, max_size=1024 * 1024, seed=5)
    assert [p.name for p in paths[:3]] == ["img-000000.png", "img-000001.jpg", "img-000002.webp"]
    sizes = [p.stat().st_size for p in paths]
    assert all(1024 <= s <= 1024 * 1024 for s in sizes)
    # log-uniform: each third of the log range gets a fair share
    logs = [
        (math.log(s) - math.log(1024)) / (math.log(1024 * 1024) - math.log(1024)) for s in sizes
    ]
    for low in (0, 1 / 3, 2 / 3):
        assert 60 < sum(low <= x < low + 1 / 3 + 1e-9 for x in logs) < 140
    kinds = [sniff(p.read_bytes()[:SNIFF_BYTES]) for p in paths]
    assert {k: kinds.count(k) for k in set(kinds)} == {
        ImageType.PNG: 100,
        ImageType.JPEG: 100,
        ImageType.WEBP: 100,
    }
    again = make_dataset(tmp_path / "again", 300, min_size=1024, max_size=1024 * 1024, seed=5)
    assert [p.read_bytes() for p in again[:5]] == [p.read_bytes() for p in paths[:5]]


def test_make_dataset_rejects_bad_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="min_size"):
        make_dataset(tmp_path, 1, min_size=10)
    with pytest.raises(ValueError, match="min_size"):
        make_dataset(tmp_path, 1, min_size=2000, max_size=1000)


def test_write_jsonl_manifest(tmp_path: Path) -> None:
    inside = make_dataset(tmp_path / "imgs", 2, max_size=2048)
    outside = tmp_path / "elsewhere.png"
    make_image(outside, "png", 100, seed=1)
    (tmp_path / "sub").mkdir()
    manifest = write_jsonl_manifest([*inside, outside], tmp_path / "sub" / "m.jsonl", captions=True)
    # outside the manifest's directory: written absolute
    assert f'"path":"{inside[0]}"'.encode() in manifest.read_bytes()
    results = list(read_manifest(manifest))
    assert all(isinstance(r, Item) for r in results)
    got = [(r.key, r.path, r.caption) for r in results if isinstance(r, Item)]
    assert got[0] == ("item-000000", inside[0], "test image 0 (img-000000)")
    assert got[2][1] == outside
    plain = write_jsonl_manifest(inside, tmp_path / "imgs" / "m.jsonl", ids=False)
    assert plain.read_bytes() == b'{"path":"img-000000.png"}\n{"path":"img-000001.jpg"}\n'
    assert [r.key for r in read_manifest(plain) if isinstance(r, Item)] == [
        "img-000000.png",
        "img-000001.jpg",
    ]


def test_a_decimal_limit_is_shown_in_mb(tmp_path: Path) -> None:
    """ModelHunter documents 50 MB (10^6 bytes): its limit showed as "47.7 MiB"."""
    path = tmp_path / "big.png"
    make_image(path, "png", 5_300_000, seed=1)
    limits = Limits(NOVITA.formats, max_size=5_000_000, provider="modelhunter")
    assert failure(check(item_for(path), limits)) == (
        f"too large: 5.3 MB, over modelhunter's 5.0 MB limit: {path}"
    )
    make_image(path, "png", 5_000_001, seed=1)
    assert "too large: 5,000,001 bytes, over modelhunter's 5,000,000 bytes limit" in failure(
        check(item_for(path), limits)
    )
