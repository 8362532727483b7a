"""A zip's central directory streamed entry by entry (issue 15): the members, their order, names
and offsets are `zipfile`'s, memory stays flat at any member count, and a compressed member
decompresses from its own range (no `ZipFile` of the whole shard)."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ingest.errors import ManifestError
from ingest.item import Item
from ingest.manifest import count_entries, read_manifest
from ingest.manifest.packed import list_members
from ingest.manifest.packed.access import read_member
from tests.images import image_bytes


def expected(shard: Path) -> list[tuple[str, int, int, bytes]]:
    """(name, data offset, size, bytes) of each file member, as zipfile lists and reads them."""
    raw = shard.read_bytes()
    with zipfile.ZipFile(shard) as zf:
        return [
            (info.filename, _data_at(raw, info.header_offset), info.file_size, zf.read(info))
            for info in zf.infolist()
            if not info.is_dir()
        ]


def _data_at(raw: bytes, header: int) -> int:
    name_len, extra_len = struct.unpack_from("<HH", raw, header + 26)  # APPNOTE 4.3.7
    return int(header + 30 + name_len + extra_len)


def listed(shard: Path) -> list[tuple[str, int, int, bytes]]:
    out = []
    for entry in list_members(str(shard), "zip"):
        assert entry.member is not None and entry.problem is None, entry
        member = entry.member
        out.append((member.name, member.offset, member.length, read_member(shard, member, 1 << 30)))
    return out


_NAME = st.text(alphabet="abz.-_ üé中/", min_size=1, max_size=40).filter(
    lambda s: not s.startswith("/") and "//" not in s
)


@settings(max_examples=15, deadline=None)
@given(
    members=st.lists(
        st.tuples(
            _NAME,
            st.binary(max_size=3000),
            st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2]),
            st.booleans(),  # force zip64 extra fields
        ),
        max_size=8,
        unique_by=lambda m: m[0],
    ),
    prefix=st.binary(max_size=40),  # a self-extracting stub before the archive
    # zipfile (the reference) takes an end signature inside the comment for the end record
    comment=st.binary(max_size=300).filter(lambda c: b"PK\x05\x06" not in c),
    ascii_only=st.booleans(),
)
@example(  # two names that are one in ASCII (a CI run found it)
    members=[("é", b"", zipfile.ZIP_STORED, False), ("ü", b"", zipfile.ZIP_STORED, False)],
    prefix=b"",
    comment=b"",
    ascii_only=True,
)
def test_the_streamed_directory_lists_what_zipfile_lists(
    members: list[tuple[str, bytes, int, bool]],
    prefix: bytes,
    comment: bytes,
    ascii_only: bool,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    shard = tmp_path_factory.mktemp("zips") / "p.zip"
    buffer = io.BytesIO()
    seen: set[str] = set()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data, method, zip64 in members:
            written = name.encode("ascii", "replace").decode() if ascii_only else name
            if written.endswith("/"):
                written += "x"
            if written in seen:  # 'é' and 'ü' are both '?' in ASCII: one zip name, once
                continue
            seen.add(written)
            info = zipfile.ZipInfo(written)
            info.compress_type = method
            with zf.open(info, "w", force_zip64=zip64) as fh:
                fh.write(data)
        zf.comment = comment
    shard.write_bytes(prefix + buffer.getvalue())
    assert listed(shard) == expected(shard)


def test_members_of_every_method_read_back_and_a_damaged_one_fails_its_crc(tmp_path: Path) -> None:
    shard = tmp_path / "methods.zip"
    data = {f"{m}.png": image_bytes("png", 5_000, m) for m in (0, 8, 12, 14)}
    with zipfile.ZipFile(shard, "w") as zf:
        for name, body in data.items():
            zf.writestr(name, body, compress_type=int(name.split(".")[0]))
    assert [(n, size, body) for n, _, size, body in listed(shard)] == [
        (n, len(b), b) for n, b in data.items()
    ]
    deflated = next(
        e.member for e in list_members(str(shard), "zip") if e.member and e.member.name == "8.png"
    )
    assert deflated is not None and deflated.codec == (
        zipfile.ZIP_DEFLATED,
        zlib.crc32(data["8.png"]),
    )
    broken = bytearray(shard.read_bytes())
    broken[deflated.offset + 20] ^= 0xFF
    shard.write_bytes(bytes(broken))
    with pytest.raises(OSError, match=r"damaged member \(.*\): .*methods\.zip#8\.png"):
        read_member(shard, deflated, deflated.length)


def test_listing_a_zip_of_many_members_holds_one_entry_at_a_time(tmp_path: Path) -> None:
    shard = tmp_path / "many.zip"
    with zipfile.ZipFile(shard, "w") as zf:
        for index in range(1_000):
            zf.writestr(f"s/{index:06d}.png", b"x")
    tracemalloc.start()
    try:
        count = sum(1 for _ in list_members(str(shard), "zip"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 1_000
    # zipfile.ZipFile(shard) alone traces ~0.6 MB here (a ZipInfo and a dict entry a member).
    assert peak < 100_000  # of which 64 KiB is the read of the end record


def test_a_damaged_directory_ends_the_listing_after_what_it_read(tmp_path: Path) -> None:
    shard = tmp_path / "cut.zip"
    with zipfile.ZipFile(shard, "w") as zf:
        zf.writestr("a.png", image_bytes("png", 700, 1))
        zf.writestr("b.png", image_bytes("png", 700, 2))
    raw = bytearray(shard.read_bytes())
    second = raw.rindex(b"PK\x01\x02")  # b.png's directory entry
    raw[second + 1] = 0
    shard.write_bytes(bytes(raw))
    found = list(read_manifest(shard))
    assert isinstance(found[0], Item) and found[0].key == "cut.zip#a.png"
    assert isinstance(found[1], ManifestError)
    assert found[1].reason == (
        f"the zip's central directory is damaged at entry 2; the members after it are lost: {shard}"
    )
    raw[raw.index(b"PK\x01\x02") + 1] = 0
    shard.write_bytes(bytes(raw))
    with pytest.raises(
        ManifestError, match=r"not a readable zip archive \(central directory damaged\)"
    ):
        read_manifest(shard)
    (tmp_path / "none.zip").write_bytes(b"no end record here")
    with pytest.raises(
        ManifestError, match=r"not a readable zip archive \(File is not a zip file\)"
    ):
        read_manifest(tmp_path / "none.zip")


@pytest.mark.parametrize(
    "damage", ["none", "encrypted", "local header", "sizes", "directory", "no image"]
)
def test_a_zip_counted_from_its_directory_alone_counts_what_reading_it_yields(
    tmp_path: Path, damage: str
) -> None:
    # The seek-ahead count reads no local header: every damage a local header or a size can
    # carry is an image's own result, counted as one; a damaged directory entry ends both.
    shard = tmp_path / f"{damage.replace(' ', '-')}.zip"
    with zipfile.ZipFile(shard, "w") as zf:
        zf.writestr("dir/", b"")
        zf.writestr("s/0.png" if damage != "no image" else "s/0.bin", image_bytes("png", 700, 1))
        zf.writestr("s/0.txt", b"a caption")
        zf.writestr("s/1.jpg", image_bytes("jpeg", 800, 2), compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("s/2.webp", image_bytes("webp", 900, 3))
    raw = bytearray(shard.read_bytes())
    central = [i for i in range(len(raw)) if raw[i : i + 4] == b"PK\x01\x02"]
    jpg = central[3]  # s/1.jpg's directory entry (APPNOTE 4.3.12)
    if damage == "encrypted":
        raw[jpg + 8] |= 0x1  # general purpose flag bit 0
    elif damage == "local header":
        local = struct.unpack_from("<L", raw, jpg + 42)[0]
        raw[local : local + 4] = b"XXXX"
    elif damage == "sizes":
        struct.pack_into("<L", raw, jpg + 20, len(raw) * 2)  # its compressed size: past the end
    elif damage == "directory":
        raw[central[4] + 1] = 0  # s/2.webp's entry
    shard.write_bytes(bytes(raw))
    found = list(read_manifest(shard))
    images = 3 - (damage == "no image") - (damage == "directory")
    assert sum(isinstance(r, Item) for r in found) == images - (
        damage in ("encrypted", "local header", "sizes")
    )
    assert count_entries(shard) == len(found)
