"""A folder of shards is a dataset (issue 15): every ``.tar``, ``.zip`` and ``.parquet`` a folder
walk meets is read in its place, its members keyed by the shard's path in the folder, with the
same rules as the shard given as the manifest; loose images beside them stay as they were."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ingest
from ingest.cli.main import main
from ingest.errors import ManifestError
from ingest.item import Item
from ingest.manifest import SkippedFiles, WalkStats, count_entries, read_manifest, walkstats
from ingest.manifest.packed.infolder import packed_counts
from ingest.reasons import group
from tests.images import image_bytes
from tests.unit.test_packed import add, digests, landed, upload, webdataset


def dataset(root: Path) -> dict[str, bytes]:
    """A folder with a WebDataset tar, a zip and a Parquet file in subfolders, a loose image
    with its caption file, and a compressed tar; every image's bytes by its expected key."""
    tarred = webdataset(_mkdir(root / "shards") / "000.tar")
    images = {f"shards/000.tar#{k}": v for k, v in tarred.items()}
    zipped = {"z/a.png": image_bytes("png", 900, 11), "z/b.jpg": image_bytes("jpeg", 800, 12)}
    with zipfile.ZipFile(root / "shards" / "001.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in zipped.items():
            zf.writestr(name, data)
            if name == "z/a.png":  # a sample's members are adjacent (WebDataset's grouping)
                zf.writestr("z/a.txt", "a zipped caption")
    images |= {f"shards/001.zip#{k}": v for k, v in zipped.items()}
    rows = [image_bytes("webp", 700 + i, 20 + i) for i in range(2)]
    table = pa.table({"image": pa.array(rows, type=pa.binary()), "text": ["row zero", None]})
    pq.write_table(table, _mkdir(root / "train") / "0.parquet")
    images |= {f"train/0.parquet#row-{i}": data for i, data in enumerate(rows)}
    images["loose.png"] = image_bytes("png", 1_200, 30)
    (root / "loose.png").write_bytes(images["loose.png"])
    (root / "loose.txt").write_text("a loose caption")
    (root / "old.tar.gz").write_bytes(b"\x1f\x8b not read")
    return images


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_a_folder_of_shards_yields_their_members_beside_its_loose_images(tmp_path: Path) -> None:
    root = tmp_path / "data"
    images = dataset(root)
    stats = WalkStats()
    found = list(read_manifest(root, walk=stats))
    items = {r.key: r for r in found if isinstance(r, Item)}
    assert all(isinstance(r, Item) for r in found)
    assert list(items) == sorted(images, key=lambda k: k.split("#")[0])  # in the walk's order
    assert [r.line for r in found] == list(range(1, len(images) + 1))  # walk positions
    tarred = items["shards/000.tar#s/000000.jpg"]
    assert (tarred.caption, tarred.metadata) == ("a fox in snow", {"score": 0.9})
    assert tarred.path == root / "shards" / "000.tar" and tarred.member is not None
    assert items["shards/001.zip#z/a.png"].caption == "a zipped caption"
    assert items["train/0.parquet#row-0"].caption == "row zero"
    assert items["loose.png"].caption == "a loose caption" and items["loose.png"].member is None
    assert stats.captions.files == ("json members", "column 'text'")
    assert "old.tar.gz" in stats.skipped.examples
    assert count_entries(root) == len(found)


def test_a_folder_of_shards_uploads_every_image_once_and_resumes(tmp_path: Path) -> None:
    root = tmp_path / "data"
    images = dataset(root)
    first = upload(root, tmp_path)
    assert first.complete and first.done == len(images) and first.journal is not None
    assert landed(tmp_path) == digests(images)
    rows = {r["key"]: r.get("caption") for r in ingest.export(first.journal)}
    assert rows["shards/000.tar#s/000001.png"] == "from json"
    again = upload(root, tmp_path)
    assert again.complete and again.this_run.skipped == len(images) and again.this_run.done == 0


def test_a_bad_shard_is_one_problem_naming_it_and_the_walk_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (_mkdir(root) / "a.png").write_bytes(image_bytes("png", 900, 1))
    (root / "broken.zip").write_bytes(b"PK\x03\x04 but not a zip")
    pq.write_table(pa.table({"file_name": ["x.png"]}), root / "meta.parquet")
    with tarfile.open(root / "only-labels.tar", "w") as tar:
        add(tar, "s/0.cls", b"3")
    with tarfile.open(_mkdir(root / "z") / "b.tar", "w") as tar:
        add(tar, "s/1.png", image_bytes("png", 700, 2))
        add(tar, "s/1.txt", b"\xff not utf-8")
    stats = WalkStats()
    found = list(read_manifest(root, walk=stats))
    problems = [(r.key, r.reason) for r in found if isinstance(r, ManifestError)]
    assert problems[0] == (
        "broken.zip",
        f"not a readable zip archive (File is not a zip file): {root / 'broken.zip'}",
    )
    assert problems[1][0] == "meta.parquet" and problems[1][1].startswith("no image column")
    assert problems[2][1] == (
        f"txt member is not UTF-8 (byte 0 is 0xff): {root / 'z' / 'b.tar'}#s/1.txt"
    )
    assert [r.key for r in found if isinstance(r, Item)] == ["a.png"]
    # No image in it: one skipped file, as other files, and its members not counted apart; the
    # shards that could not be read, or held no image, are not counted as read.
    assert stats.skipped == SkippedFiles(files=1, examples=("only-labels.tar",))
    assert packed_counts(stats) == {"tar": 1}
    counted = WalkStats()
    assert count_entries(root, stats=counted) == len(found) == 4
    assert (counted.skipped, packed_counts(counted)) == (stats.skipped, {"tar": 1})


@pytest.mark.parametrize("with_image", [False, True])
def test_a_shard_past_the_held_members_is_still_one_skipped_file_or_its_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_image: bool
) -> None:
    monkeypatch.setattr(walkstats, "HOLD", 2)  # the shard's listing is asked past two
    root = _mkdir(tmp_path / "data")
    (root / "a.png").write_bytes(image_bytes("png", 900, 1))
    with zipfile.ZipFile(root / "s.zip", "w") as zf:
        for i in range(4):
            zf.writestr(f"s/{i}.cls", b"3")
        if with_image:
            zf.writestr("s/9.png", image_bytes("png", 700, 2))
    stats = WalkStats()
    found = list(read_manifest(root, walk=stats))
    assert len(found) == 1 + with_image
    examples = ("s.zip#s/0.cls", "s.zip#s/1.cls", "s.zip#s/2.cls") if with_image else ("s.zip",)
    assert stats.skipped == SkippedFiles(files=4 if with_image else 1, examples=examples)


def test_a_shard_reached_by_two_routes_is_read_once(tmp_path: Path) -> None:
    root = tmp_path / "data"
    images = webdataset(_mkdir(root / "real") / "s.tar")
    (root / "again").symlink_to("real", target_is_directory=True)
    found = list(read_manifest(root))
    assert [r.key for r in found if isinstance(r, Item)] == [f"again/s.tar#{k}" for k in images]
    (problem,) = [r for r in found if isinstance(r, ManifestError)]
    assert problem.key == "real/s.tar" and problem.reason.startswith("same packed file as 'again/")
    assert count_entries(root) == len(found)
    # Newcomer8: each such shard was a problem group of its own (its names in the reason).
    assert group(problem.reason) == (
        "same packed file as '…' (a link to it, or another route to it): "
        "its members are read once, as '…'"
    )


def test_validate_says_what_each_shard_member_becomes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    dataset(root)
    assert main(["validate", str(root), "--provider", "novita", "--each"]) == 0
    out = capsys.readouterr().out
    assert "shards/000.tar#s/000000.jpg: kept: jpeg, 2.9 KiB, caption from s/000000.txt" in out
    assert "train/0.parquet#row-1: kept: webp, " in out
    assert "old.tar.gz: skipped: a compressed tar: ingest reads an uncompressed .tar" in out
    assert f"{root}: read 3 packed files (1 tar, 1 zip, 1 parquet)" in out
    assert main(["validate", str(root), "--provider", "novita", "--json"]) == 0
    document = orjson.loads(capsys.readouterr().out)
    assert document["packed"] == {"tar": 1, "zip": 1, "parquet": 1}


def test_a_shard_s_problems_in_a_folder_name_the_shard_and_the_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Newcomer8: in a folder, a shard cut short said 'data: the tar is cut short: …' (which
    # tar?) and a bad caption member 'data: txt member is not UTF-8 …', not the image's key.
    root = tmp_path / "data"
    with tarfile.open(_mkdir(root / "z") / "b.tar", "w") as tar:
        add(tar, "s/1.png", image_bytes("png", 700, 2))
        add(tar, "s/1.txt", b"\xff not utf-8")
    with tarfile.open(root / "z" / "c.tar", "w") as tar:
        add(tar, "s/2.png", image_bytes("png", 700, 3))
        add(tar, "s/3.png", image_bytes("png", 700, 4))
    cut = root / "z" / "c.tar"
    cut.write_bytes(cut.read_bytes()[:1300])  # in s/2.png's padding (its data 512-1212)
    problems = [r for r in read_manifest(root) if isinstance(r, ManifestError)]
    assert [(r.key, r.reason.rsplit(": ", 1)[1]) for r in problems] == [
        ("z/b.tar#s/1.png", f"{root / 'z' / 'b.tar'}#s/1.txt"),
        (None, str(cut)),
    ]
    assert main(["validate", str(root), "--provider", "novita"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "z/b.tar#s/1.png: txt member is not UTF-8 (byte 0 is 0xff)" + (
        f": {root / 'z' / 'b.tar'}#s/1.txt"
    )
    assert out[1].startswith(f"{root}: the tar is cut short: it ends at byte 1300,")
    assert out[1].endswith(f": {cut}")
