"""Packed sources read in place (issue 15 part 1): a WebDataset ``.tar`` or a ``.zip`` is a
manifest whose image members are items, their bytes a range of the shard (or a decompressed
stream), uploaded with their caption members; a manifest line may name ``shard.tar#member``."""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import zipfile
from pathlib import Path

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import ingest
from ingest.api.wiring import sim_settings
from ingest.errors import ManifestError
from ingest.item import Item
from ingest.manifest import WalkStats, count_entries, read_manifest
from ingest.manifest.folder import Captions
from ingest.manifest.packed import list_members, samples, tarheaders
from ingest.reasons import group
from tests.images import image_bytes
from tests.results import journal_of

BIG = 400_000  # over the read-ahead's 256 KiB: streamed at upload, not read whole


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def webdataset(path: Path) -> dict[str, bytes]:
    """A shard of 4 samples (captions by .txt, by .json, none) plus strays; its images' bytes."""
    images = {
        "s/000000.jpg": image_bytes("jpeg", 3_000, 1),
        "s/000001.png": image_bytes("png", BIG, 2),
        "s/000002.webp": image_bytes("webp", 2_500, 3),
        "s/000003.jpg": image_bytes("jpeg", 2_000, 4),
        "s/000003.seg.png": image_bytes("png", 1_000, 5),
    }
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "s/000000.jpg", images["s/000000.jpg"])
        add(tar, "s/000000.txt", b"a fox in snow\n")
        add(tar, "s/000000.json", b'{"score": 0.9}')
        add(tar, "s/000001.png", images["s/000001.png"])
        add(tar, "s/000001.json", b'{"caption": "from json", "w": 512}')
        add(tar, "s/000001.cls", b"7")
        add(tar, "s/000002.webp", images["s/000002.webp"])
        add(tar, "s/000003.jpg", images["s/000003.jpg"])
        add(tar, "s/000003.seg.png", images["s/000003.seg.png"])
        add(tar, "s/000003.caption", b"two images, one caption")
        add(tar, "s/000004.txt", b"a sample without an image")
    return images


def results(path: Path) -> tuple[list[Item | ManifestError], WalkStats]:
    stats = WalkStats()
    return list(read_manifest(path, walk=stats)), stats


def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def landed(tmp_path: Path) -> list[str]:
    """SHA-256 of every body the emulator stored, sorted."""
    return sorted(
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in store(tmp_path).rglob("*")
        if p.is_file()
    )


def digests(images: dict[str, bytes]) -> list[str]:
    return sorted(hashlib.sha256(data).hexdigest() for data in images.values())


def upload(source: Path, tmp_path: Path) -> ingest.Result:
    settings = sim_settings(store_dir=store(tmp_path))
    return ingest.upload_sync(source, provider="novita", sim=settings, put_concurrency=3)


def test_a_webdataset_tar_groups_members_into_samples(tmp_path: Path) -> None:
    shard = tmp_path / "shard-000.tar"
    webdataset(shard)
    found, stats = results(shard)
    got = [(r.key, r.caption, r.metadata, r.caption_from) for r in found if isinstance(r, Item)]
    assert got == [
        ("shard-000.tar#s/000000.jpg", "a fox in snow", {"score": 0.9}, "s/000000.txt"),
        ("shard-000.tar#s/000001.png", "from json", {"w": 512}, "s/000001.json (caption)"),
        ("shard-000.tar#s/000002.webp", None, None, None),
        ("shard-000.tar#s/000003.jpg", "two images, one caption", None, "s/000003.caption"),
        ("shard-000.tar#s/000003.seg.png", "two images, one caption", None, "s/000003.caption"),
    ]
    assert all(isinstance(r, Item) for r in found)
    assert stats.captions == Captions(sidecar=3, metadata=1, none=1, files=("json members",))
    assert stats.captions.describe() == (
        "captions: 3 from caption files, 1 from json members, 1 without a caption"
    )
    assert stats.skipped.examples == ("shard-000.tar#s/000001.cls", "shard-000.tar#s/000004.txt")
    assert count_entries(shard) == len(found)
    # A member is a range of the shard: the bytes there are the image's.
    item = next(r for r in found if isinstance(r, Item))
    assert item.member is not None and item.member.stored
    with shard.open("rb") as fh:
        fh.seek(item.member.offset)
        assert fh.read(item.member.length) == image_bytes("jpeg", 3_000, 1)


def test_a_tar_uploads_each_image_once_and_resumes_without_a_second_copy(tmp_path: Path) -> None:
    shard = tmp_path / "shard.tar"
    images = webdataset(shard)
    first = upload(shard, tmp_path)
    assert first.complete and (first.done, first.total) == (5, 5)
    assert landed(tmp_path) == digests(images)  # the exact member bytes, nothing else
    rows = {r["key"]: r for r in ingest.export(journal_of(first))}
    assert rows["shard.tar#s/000000.jpg"]["caption"] == "a fox in snow"
    assert rows["shard.tar#s/000000.jpg"]["path"] == f"{shard}#s/000000.jpg"
    again = upload(shard, tmp_path)
    assert again.complete and again.this_run.skipped == 5 and again.this_run.done == 0
    # A rewritten shard is told by its fingerprint (the shard's mtime, the member's size).
    os.utime(shard, ns=(1, 1))
    changed = upload(shard, tmp_path)
    assert changed.this_run.changed == 5 and not changed.complete


def test_a_zip_uploads_stored_and_deflated_members(tmp_path: Path) -> None:
    shard = tmp_path / "pack.zip"
    images = {
        "a.png": image_bytes("png", BIG, 1),  # deflated, streamed through the decompressor
        "b.webp": image_bytes("webp", 2_000, 2),  # deflated, read ahead whole
        "c/d.jpg": image_bytes("jpeg", BIG, 3),  # stored: a range of the zip file
    }
    with zipfile.ZipFile(shard, "w") as z:
        z.writestr("a.png", images["a.png"], compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("a.txt", "zip caption")
        z.writestr("b.webp", images["b.webp"], compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("c/d.jpg", images["c/d.jpg"])
    found, _ = results(shard)
    members = {r.key: r.member for r in found if isinstance(r, Item)}
    stored = {key: m.stored for key, m in members.items() if m is not None}
    assert stored == {"pack.zip#a.png": False, "pack.zip#b.webp": False, "pack.zip#c/d.jpg": True}
    result = upload(shard, tmp_path)
    assert result.complete and result.done == 3
    assert landed(tmp_path) == digests(images)
    rows = {r["key"]: r.get("caption") for r in ingest.export(journal_of(result))}
    assert rows == {
        "pack.zip#a.png": "zip caption",
        "pack.zip#b.webp": None,
        "pack.zip#c/d.jpg": None,
    }


def test_bad_members_are_named_with_shard_and_member_and_the_others_go_on(
    tmp_path: Path,
) -> None:
    shard = tmp_path / "bad.tar"
    good = image_bytes("png", 2_000, 1)
    with tarfile.open(shard, "w") as tar:
        add(tar, "ok.png", good)
        add(tar, "text.png", b"this is not an image, only text")
        add(tar, "latin.png", image_bytes("png", 900, 2))
        add(tar, "latin.txt", "caf\xe9".encode("latin-1"))
        add(tar, "cut.jpg", image_bytes("jpeg", 5_000, 3))
    data = shard.read_bytes()
    cut = data.index(image_bytes("jpeg", 5_000, 3))
    shard.write_bytes(data[: cut + 1_000])  # cut off in cut.jpg
    result = upload(shard, tmp_path)
    assert (result.done, result.rejected) == (1, 3)
    assert landed(tmp_path) == digests({"ok": good})
    reasons = sorted(f.reason for f in ingest.failures(journal_of(result)))
    assert [group(r) for r in reasons] == [
        "not an image (content looks like text ('…'))",
        "truncated member (bytes N of a shard that ends at byte N)",
        "txt member is not UTF-8 (byte N is 0x…)",
    ]
    assert reasons == [
        f"not an image (content looks like text ('this is not an image, o…')): {shard}#text.png",
        f"truncated member (bytes {cut}-{cut + 5_000} of a shard that ends at byte {cut + 1_000})"
        f": {shard}#cut.jpg",
        f"txt member is not UTF-8 (byte 3 is 0xe9): {shard}#latin.txt",
    ]


def test_a_member_name_the_shard_holds_twice_is_uploaded_once(tmp_path: Path) -> None:
    shard = tmp_path / "twice.tar"
    with tarfile.open(shard, "w") as tar:
        add(tar, "a.png", image_bytes("png", 700, 1))
        add(tar, "b.png", image_bytes("png", 700, 2))
    with tarfile.open(shard, "a") as tar:  # appended to: a second a.png
        add(tar, "a.png", image_bytes("png", 700, 3))
    found, _ = results(shard)
    assert [r.key for r in found if isinstance(r, Item)] == ["twice.tar#a.png", "twice.tar#b.png"]
    assert [r.reason for r in found if isinstance(r, ManifestError)] == [
        f"member name repeated in the shard (first as entry 1): {shard}#a.png"
    ]
    assert count_entries(shard) == len(found)


def test_a_manifest_line_names_a_member(tmp_path: Path) -> None:
    shard = tmp_path / "shards" / "000.tar"
    shard.parent.mkdir()
    images = webdataset(shard)
    lines = [
        {"path": "shards/000.tar#s/000001.png", "caption": "named by the manifest"},
        {"path": "shards/000.tar#s/000002.webp"},
        {"path": "shards/000.tar#s/nope.png"},
        {"path": "shards/missing.tar#a.png"},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    found, _ = results(manifest)
    items = [r for r in found if isinstance(r, Item)]
    assert [(i.key, i.caption) for i in items] == [
        ("shards/000.tar#s/000001.png", "named by the manifest"),
        ("shards/000.tar#s/000002.webp", None),
    ]
    problems = [(r.line, r.reason) for r in found if isinstance(r, ManifestError)]
    assert problems == [
        (3, f"no member 's/nope.png' in the shard: {shard}"),
        (4, f"shard not found: {tmp_path / 'shards' / 'missing.tar'}"),
    ]
    # validate's table groups it whole (it said "no member '…' in": the path went, "in" stayed)
    assert group(problems[0][1]) == "no member '…' in the shard"
    result = upload(manifest, tmp_path)
    assert (result.done, result.rejected) == (2, 2)
    assert landed(tmp_path) == digests({k: images[k] for k in ("s/000001.png", "s/000002.webp")})


def test_a_shard_that_cannot_be_read_is_refused_before_any_member(tmp_path: Path) -> None:
    gz = tmp_path / "x.tar"
    gz.write_bytes(b"\x1f\x8b\x08\x00" + bytes(600))
    with pytest.raises(ManifestError, match="a compressed tar; ingest reads members in place"):
        read_manifest(gz)
    bad = tmp_path / "y.zip"
    bad.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ManifestError, match="not a readable zip archive"):
        read_manifest(bad)


def test_scenario_reads_members_for_its_json_and_multipart_bodies(tmp_path: Path) -> None:
    shard = tmp_path / "sc.zip"
    images = {
        "small.png": image_bytes("png", 3_000, 1),
        "large.png": image_bytes("png", 6_100_000, 2),  # over 6 MB: the multipart flow, in parts
    }
    with zipfile.ZipFile(shard, "w") as z:
        z.writestr("small.png", images["small.png"], compress_type=zipfile.ZIP_DEFLATED)
        z.writestr(
            "large.png", images["large.png"], compress_type=zipfile.ZIP_DEFLATED, compresslevel=1
        )
    settings = sim_settings(store_dir=store(tmp_path))
    result = ingest.upload_sync(
        shard, provider="scenario", sim=settings, model_id="model_packed", put_concurrency=2
    )
    assert result.complete and result.done == 2
    # The large one went up in parts (the small one as JSON): the parts are its bytes.
    parts = sorted(p for p in store(tmp_path).rglob("*") if p.is_file())
    assert len(parts) >= 2 and len({p.parent for p in parts}) == 1
    assert (
        b"".join(p.read_bytes() for p in sorted(parts, key=lambda p: int(p.name)))
        == (images["large.png"])
    )


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_the_header_reader_lists_what_tarfile_lists(tmp_path: Path, fmt: int) -> None:
    shard = tmp_path / "formats.tar"
    names = [
        "a.png",
        "deep/" + "d" * 120 + "/b.jpg",  # ustar: a prefix; GNU: a long name; pax: a path record
        "x" * 150 + ".png",  # too long for ustar's prefix split, but not for GNU or pax
        "ünï/cødé.webp",
        "empty.txt",
    ]
    if fmt == tarfile.USTAR_FORMAT:
        names.remove("x" * 150 + ".png")
    with tarfile.open(shard, "w", format=fmt, encoding="utf-8") as tar:
        for index, name in enumerate(names):
            add(tar, name, b"" if name == "empty.txt" else bytes([index]) * (700 + index))
        folder = tarfile.TarInfo("deep")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        link = tarfile.TarInfo("link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "a.png"
        tar.addfile(link)
    with tarfile.open(shard, encoding="utf-8") as tar:
        expected = [(m.name, m.offset_data, m.size) for m in tar.getmembers() if m.isreg()]
    listed = [
        (e.member.name, e.member.offset, e.member.length)
        for e in list_members(str(shard), "tar")
        if e.member
    ]
    assert listed == expected


def test_a_damaged_header_ends_the_listing_with_its_problem(tmp_path: Path) -> None:
    shard = tmp_path / "damaged.tar"
    with tarfile.open(shard, "w") as tar:
        add(tar, "a.png", image_bytes("png", 600, 1))
        add(tar, "b.png", image_bytes("png", 600, 2))
    data = bytearray(shard.read_bytes())
    data[512 + 1024 + 10] ^= 0xFF  # b.png's header (after a.png's header and 2 data blocks)
    shard.write_bytes(bytes(data))
    listed = list(list_members(str(shard), "tar"))
    assert [e.member.name for e in listed if e.member] == ["a.png"]
    assert listed[-1].problem == (
        "damaged tar header at byte 1536 after member 'a.png'; the members after it are lost"
    )
    noise = tmp_path / "noise.tar"
    noise.write_bytes(b"\x01" * 2048)
    with pytest.raises(ManifestError, match=r"not a tar archive \(no valid tar header\)"):
        read_manifest(noise)


_SEGMENT = st.text(alphabet="abz.-_ üé中", min_size=1, max_size=60).filter(
    lambda s: s.strip(".") != ""
)


@settings(max_examples=15, deadline=None)
@given(
    members=st.lists(
        st.tuples(st.lists(_SEGMENT, min_size=1, max_size=4).map("/".join), st.integers(0, 1500)),
        max_size=6,
        unique_by=lambda m: m[0],
    ),
    fmt=st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]),
)
def test_the_header_reader_agrees_with_tarfile_on_any_names_and_sizes(
    members: list[tuple[str, int]], fmt: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    shard = tmp_path_factory.mktemp("prop") / "p.tar"
    with tarfile.open(shard, "w", format=fmt, encoding="utf-8") as tar:
        for name, size in members:
            add(tar, name, b"\x07" * size)
    with tarfile.open(shard, encoding="utf-8") as tar:
        expected = [(m.name, m.offset_data, m.size) for m in tar.getmembers() if m.isreg()]
    listed = list_members(str(shard), "tar")
    assert [(e.member.name, e.member.offset, e.member.length) for e in listed if e.member] == (
        expected
    )


@settings(max_examples=100, deadline=None)
@given(name=st.text(alphabet="ab./", max_size=12))
def test_samples_split_names_as_webdataset_does(name: str) -> None:
    found = re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", name)  # webdataset.tariterators.base_plus_ext
    expected = (found.group(1), found.group(2).lower()) if found else None
    assert samples._split(name) == expected


@settings(max_examples=60, deadline=None)
@given(
    block=st.binary(min_size=512, max_size=512),
    fill=st.tuples(st.sampled_from([0x00, 0x7F, 0x80, 0xFF]), st.integers(0, 512)),
    off=st.integers(-2, 2),
)
@example(block=bytes(512), fill=(0xFF, 512), off=0)  # the largest sums
@example(block=bytes(512), fill=(0xFF, 512), off=-65521)  # Adler-32's modulus away
def test_a_header_checks_out_when_its_checksum_is_its_byte_sum(
    block: bytes, fill: tuple[int, int], off: int
) -> None:
    # POSIX ustar: the sum of the header's bytes, the checksum field taken as 8 spaces, as
    # unsigned (or, as some old tars wrote it, signed) chars; the reader sums them in C.
    byte, many = fill  # the first `many` bytes all `byte`: sums up to 512 x 255
    block = bytes([byte]) * many + block[many:]
    unsigned = sum(block[:148]) + 256 + sum(block[156:])
    signed = sum(b - 256 if b > 127 else b for b in block[:148] + block[156:]) + 256
    stamped = block[:148] + f"{unsigned + off:06o}\0 ".encode() + block[156:]
    assert tarheaders._checksum_ok(stamped) == (unsigned + off in (unsigned, signed))


@pytest.mark.parametrize(
    ("cut", "problem"),
    [
        # A download cut after a member's data but before its 512-byte block ends: GNU tar
        # and tarfile say "unexpected end"; the listing read it as the end and said nothing
        # (newcomer8). a.png: data 512-1112, padded to 1536.
        (
            1200,
            "the tar is cut short: it ends at byte 1200, inside the padding of member 'a.png'"
            " (to byte 1536); the members after it are lost",
        ),
        # A cut inside the next member's 512-byte header said "damaged tar header"
        # (newcomer9): the header is not damaged, the file ends in it, as GNU tar's
        # "Unexpected EOF". b.png's header: bytes 1536-2048.
        (
            1700,
            "the tar is cut short: it ends at byte 1700, inside the header at byte 1536 after"
            " member 'a.png'; the members after it are lost",
        ),
    ],
    ids=["in-padding", "in-header"],
)
def test_a_tar_cut_short_says_so_and_where(tmp_path: Path, cut: int, problem: str) -> None:
    shard = tmp_path / "cut.tar"
    with tarfile.open(shard, "w") as tar:
        add(tar, "a.png", image_bytes("png", 600, 1))
        add(tar, "b.png", image_bytes("png", 600, 2))
    shard.write_bytes(shard.read_bytes()[:cut])
    listed = list(list_members(str(shard), "tar"))
    assert [e.member.name for e in listed if e.member] == ["a.png"]
    assert listed[-1].problem == problem


def test_caption_members_apart_from_their_images_are_noted(tmp_path: Path) -> None:
    # Newcomer9: `tar cf` of a kohya folder writes it in the folder's order, not by name, so
    # a.png and a.txt are not adjacent: validate said only "skipped 2 non-image files" and
    # "2 without a caption", with nothing on why or how to write the shard.
    shard = tmp_path / "unsorted.tar"
    with tarfile.open(shard, "w") as tar:
        for name in ("a.png", "b.png", "a.txt", "b.txt"):
            add(tar, name, image_bytes("png", 300, 1) if name.endswith("png") else b"cap")
    found, stats = results(shard)
    assert [r.caption for r in found if isinstance(r, Item)] == [None, None]
    assert stats.notes == [
        f"{shard}: 2 caption members have no image next to them (a sample is a run of adjacent"
        " members, as WebDataset reads them): a shard written unsorted splits an image from"
        " its caption; write it sorted by name (tar --sort=name)"
    ]
    with tarfile.open(sorted_shard := tmp_path / "sorted.tar", "w") as tar:
        for name in ("a.png", "a.txt"):
            add(tar, name, image_bytes("png", 300, 1) if name.endswith("png") else b"cap")
    assert results(sorted_shard)[1].notes == []
