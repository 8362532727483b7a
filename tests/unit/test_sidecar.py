"""Folder mode reads the captions datasets carry: kohya-style caption files beside each image
and Hugging Face imagefolder ``metadata.jsonl`` / ``metadata.csv`` files (issue 15 part 2; R3
of the newcomer findings: such files are no longer "skipped non-images")."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ingest
from ingest.capabilities import Capabilities
from ingest.cli.main import main
from ingest.engine.triage import Rejected, Triage
from ingest.errors import ManifestError
from ingest.item import Item
from ingest.journal import Header, Replay
from ingest.manifest import WalkStats, count_entries, read_manifest
from ingest.manifest.folder import Captions, SkippedFiles
from ingest.sniff import ImageType
from ingest.validate import Checker
from tests.images import make_image, touch
from tests.results import journal_of


def walk(root: Path) -> tuple[list[Item | ManifestError], WalkStats]:
    stats = WalkStats()
    return list(read_manifest(root, walk=stats)), stats


def items(found: list[Item | ManifestError]) -> dict[str, Item]:
    return {r.key: r for r in found if isinstance(r, Item)}


def test_caption_files_beside_images_become_their_captions(tmp_path: Path) -> None:
    touch(tmp_path, "a.png", "b.jpg", "c.webp", "d.png", "sub/e.png")
    (tmp_path / "a.txt").write_text("a red fox\n")
    (tmp_path / "b.caption").write_text("\ufeff  a blue jay  ")  # BOM, padding stripped
    (tmp_path / "c.txt").write_text("from txt")
    (tmp_path / "c.caption").write_text("from caption")  # .txt wins
    (tmp_path / "d.txt").write_text(" \n")  # empty: no caption
    (tmp_path / "sub" / "e.TXT").write_text("nested")
    (tmp_path / "notes.txt").write_text("no image of that name")
    found, stats = walk(tmp_path)
    got = {k: (i.caption, i.caption_from) for k, i in items(found).items()}
    assert got == {
        "a.png": ("a red fox", "a.txt"),
        "b.jpg": ("a blue jay", "b.caption"),
        "c.webp": ("from txt", "c.txt"),
        "d.png": (None, None),
        "sub/e.png": ("nested", "sub/e.TXT"),
    }
    # Caption files of images are not skipped files; the one without an image is.
    assert stats.skipped == SkippedFiles(files=1, examples=("notes.txt",))
    assert stats.captions == Captions(sidecar=4, none=1)


def test_metadata_files_follow_the_imagefolder_convention(tmp_path: Path) -> None:
    touch(tmp_path, "top.png", "train/a.png", "train/sub/b.png", "train/sub/c.png", "x.png")
    rows = [
        {"file_name": "top.png", "text": "from the root file"},
        {"file_name": "train/sub/c.png", "text": "outer row, shadowed"},
        {"file_name": "missing.png", "text": "names no image"},
    ]
    (tmp_path / "metadata.jsonl").write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    # file_name is relative to the metadata file's own folder; other columns are metadata.
    (tmp_path / "train" / "metadata.csv").write_text(
        "file_name,caption,style,empty\n"
        "a.png,a cat,ink,\n"
        "sub/b.png,,oil,\n"  # no caption, still metadata
        "sub/c.png,nearest wins,pencil,\n"
    )
    found, stats = walk(tmp_path)
    got = {k: (i.caption, i.metadata) for k, i in items(found).items()}
    assert got == {
        "top.png": ("from the root file", None),
        "train/a.png": ("a cat", {"style": "ink"}),
        "train/sub/b.png": (None, {"style": "oil"}),
        "train/sub/c.png": ("nearest wins", {"style": "pencil"}),
        "x.png": (None, None),
    }
    assert items(found)["train/a.png"].caption_from == "train/metadata.csv line 2"
    assert stats.skipped == SkippedFiles(rows=1, row_examples=("missing.png",))
    assert stats.captions == Captions(
        metadata=3, none=2, rows_unused=1, files=("metadata.jsonl", "train/metadata.csv")
    )


def test_metadata_rows_naming_no_image_are_named_by_validate_and_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sub").mkdir()
    make_image(tmp_path / "a.png", "png", 300, seed=1)
    make_image(tmp_path / "sub" / "b.png", "png", 300, seed=2)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "metadata.csv").write_text(
        "file_name,caption\na.png,a\ngone.png,x\nsub/b.png,b\nsub/lost.png,y\nnotes.txt,z\n"
    )
    found, stats = walk(tmp_path)
    assert sorted(items(found)) == ["a.png", "sub/b.png"]
    said = "3 metadata rows naming no image found (gone.png, notes.txt, sub/lost.png)"
    assert stats.skipped.rows == stats.captions.rows_unused == 3
    assert stats.skipped.describe() == f"1 non-image file (notes.txt), {said}"
    counted = WalkStats()  # the run's count ahead, whose `skipped` its note says once
    assert count_entries(tmp_path, stats=counted) == 2 and counted.skipped == stats.skipped
    assert main(["validate", str(tmp_path), "--provider", "novita", "--each"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        "gone.png: skipped: named by metadata.csv line 3, but no image of that name is there" in out
    )
    assert f"{tmp_path}: skipped 1 non-image file (notes.txt), {said}" in out


def test_a_caption_file_wins_over_a_metadata_row_whose_columns_are_kept(tmp_path: Path) -> None:
    touch(tmp_path, "a.png")
    (tmp_path / "a.txt").write_text("the caption file")
    (tmp_path / "metadata.jsonl").write_text(
        '{"file_name": "a.png", "caption": "the row", "score": 7}\n'
    )
    found, stats = walk(tmp_path)
    (item,) = items(found).values()
    assert (item.caption, item.metadata) == ("the caption file", {"score": 7})
    assert stats.captions.both == 1 and stats.captions.sidecar == 1


def test_bad_caption_sources_are_each_their_own_problem(tmp_path: Path) -> None:
    touch(tmp_path, "a.png", "b.png", "c.png", "d.png")
    (tmp_path / "a.txt").write_bytes(b"caf\xe9")  # Latin-1, not UTF-8
    (tmp_path / "c.txt").write_bytes(b"x" * (64 * 1024 + 1))
    (tmp_path / "metadata.jsonl").write_text(
        '{"file_name": "b.png", "text": "fine"}\n'
        "{not json\n"
        '{"text": "no file name"}\n'
        '{"file_name": "../up.png"}\n'
        '{"file_name": "b.png", "text": "again"}\n'
        '{"file_name": "d.png", "caption": 3}\n'
    )
    found, _ = walk(tmp_path)
    problems = [r.reason for r in found if isinstance(r, ManifestError)]
    assert problems[:4] == [
        "metadata.jsonl line 2: invalid JSON at column 2: unexpected character, expected a string key",
        'metadata.jsonl line 3: "file_name" is missing; each row names its image in "file_name"',
        "metadata.jsonl line 4: file_name '../up.png' is outside the folder of metadata.jsonl",
        'metadata.jsonl line 6: "caption" must be a string, got int',
    ]
    assert problems[4].startswith("caption file is not UTF-8 (byte 3 is 0xe9)")
    assert problems[4].endswith(str(tmp_path / "a.txt"))
    assert problems[5].startswith("caption file over 64 KiB") and "c.txt" in problems[5]
    assert sorted(items(found)) == ["b.png", "d.png"]  # the others go on
    assert items(found)["b.png"].caption == "fine"


def test_the_count_ahead_agrees_with_the_walk(tmp_path: Path) -> None:
    touch(tmp_path, "a.png", "b.png", "s/c.png", "readme.txt", "s/orphan.caption")
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "s" / "c.txt").write_text("c")
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "b.png"}\n[1]\n')
    (tmp_path / "metadata.csv").write_text("file_name\nb.png\n")  # jsonl is used, csv skipped
    found, stats = walk(tmp_path)
    counted = WalkStats()
    assert count_entries(tmp_path, stats=counted) == len(found) == 4
    assert counted.skipped == stats.skipped
    assert stats.skipped.examples == ("metadata.csv", "readme.txt", "s/orphan.caption")


def test_a_csv_metadata_file_without_file_name_says_so(tmp_path: Path) -> None:
    touch(tmp_path, "a.png")
    (tmp_path / "metadata.csv").write_text("path,text\na.png,x\n")
    found, _ = walk(tmp_path)
    assert [r.reason for r in found if isinstance(r, ManifestError)] == [
        'metadata.csv line 1: no "file_name" column (columns: path, text)'
    ]


def test_a_csv_metadata_files_problems_are_its_physical_lines_and_the_rest_goes_on(
    tmp_path: Path,
) -> None:
    # The CSV manifests' record loop (csvrows): per-line UTF-8, strict quotes, physical lines.
    touch(tmp_path, "a.png", "b.png", "c.png", "d.png", "e.png")
    (tmp_path / "metadata.csv").write_bytes(
        b"\xef\xbb\xbffile_name,text\n"
        b"a.png,caf\xe9\n"  # Latin-1: this row only
        b'b.png,"two\nlines"\n'
        b'c.png,"closed" then more\n'
        b"d.png,after the quote\n"
        b"\n"
        b"e.png,last\n"
    )
    found, _ = walk(tmp_path)
    problems = [r.reason for r in found if isinstance(r, ManifestError)]
    assert problems == [
        "metadata.csv line 2: not valid UTF-8 (byte e9 at column 10): a.png,caf\\xe9",
        "metadata.csv line 5: bad CSV record: ',' expected after '\"'",
    ]
    got = {k: (i.caption, i.caption_from) for k, i in items(found).items()}
    assert got == {
        "a.png": (None, None),
        "b.png": ("two\nlines", "metadata.csv line 3"),
        "c.png": (None, None),
        "d.png": ("after the quote", "metadata.csv line 6"),
        "e.png": ("last", "metadata.csv line 8"),
    }


def test_validate_reports_where_captions_come_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_image(tmp_path / "a.png", "png", 256, 1)
    make_image(tmp_path / "b.png", "png", 256, 2)
    make_image(tmp_path / "c.jpg", "jpeg", 256, 3)
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "b.png", "text": "b"}\n')
    (tmp_path / "notes.txt").write_text("not a caption: there is no notes.png")
    (tmp_path / "d.png").write_text("text, not a png")
    (tmp_path / "shard.tar").write_bytes(b"")
    assert main(["validate", str(tmp_path), "--provider", "novita", "--each"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:7] == [
        "a.png: kept: png, 256 B, caption from a.txt",
        "b.png: kept: png, 256 B, caption from metadata.jsonl line 1",
        "c.jpg: kept: jpeg, 256 B, no caption",
        f"d.png: rejected: not an image (content looks like text ('text, not a png')): "
        f"{tmp_path / 'd.png'}",
        f"shard.tar: rejected: not a tar archive (the file is empty): {tmp_path / 'shard.tar'}",
        "notes.txt: skipped: a caption file with no image of its name",
        f"{tmp_path}: skipped 1 non-image file (notes.txt)",
    ]
    # Only the entries that upload (d.png, rejected, has no caption: not counted; fixes8a).
    assert out[7] == (
        f"{tmp_path}: captions: 1 from caption files, 1 from metadata.jsonl, 1 without a caption"
        " (not counted: 1 entry with a problem)"
    )
    assert main(["validate", str(tmp_path), "--provider", "novita", "--json"]) == 1
    captions = orjson.loads(capsys.readouterr().out)["captions"]
    assert (captions["from_caption_files"], captions["from_metadata"], captions["without"]) == (
        1,
        1,
        1,
    )


def test_folder_captions_reach_the_export(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png", "png", 300, 1)
    make_image(tmp_path / "b.webp", "webp", 300, 2)
    (tmp_path / "a.txt").write_text("a sidecar caption")
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "b.webp", "text": "a row caption"}\n')
    result = ingest.upload_sync(tmp_path, provider="novita", sim=True, put_concurrency=2)
    assert result.complete and result.done == 2
    rows = list(ingest.export(journal_of(result)))
    assert {r["key"]: r.get("caption") for r in rows} == {
        "a.png": "a sidecar caption",
        "b.webp": "a row caption",
    }


def test_a_row_naming_an_image_again_is_named_not_counted_as_an_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # datasets (>= 3.4) makes an example of each row; ingest uploads the file once, with its
    # first row, and names the later one: the run is complete and exits 0 (was 1 rejected).
    make_image(tmp_path / "a.png", "png", 300, 1)
    make_image(tmp_path / "b.png", "png", 300, 2)
    (tmp_path / "metadata.csv").write_text("file_name,caption\na.png,first\nb.png,b\na.png,again\n")
    said = "1 metadata row naming an image again (metadata.csv line 4: a.png; the image takes"
    assert main(["validate", str(tmp_path), "--provider", "novita", "--each"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "metadata.csv line 4: skipped: names a.png again (its row is metadata.csv line 2)" in out
    assert f"{tmp_path}: skipped {said} its first row)" in out
    assert out[-1].endswith(": 2 entries for novita: 2 ok (600 B; 2 png), 0 problems")
    counted = WalkStats()
    assert count_entries(tmp_path, stats=counted) == 2 and counted.skipped.repeats == 1
    result = ingest.upload_sync(tmp_path, provider="novita", sim=True, put_concurrency=2)
    assert result.complete and (result.done, result.total, result.rejected) == (2, 2, 0)
    rows = list(ingest.export(journal_of(result)))
    assert {r["key"]: r.get("caption") for r in rows} == {"a.png": "first", "b.png": "b"}


_NAMES = st.sampled_from(["a", "b", "c", "sub/a", "sub/d", "sub/deep/a"])
_EXTS = st.sampled_from([".png", ".txt", ".caption", ".TXT", ".cls"])
_ROWS = st.lists(
    st.sampled_from(
        ['{"file_name": "a.png", "text": "t"}', '{"file_name": "sub/a.png"}', "not json", "[1]"]
    ),
    max_size=4,
)


@settings(max_examples=20, deadline=None)
@given(
    files=st.lists(st.tuples(_NAMES, _EXTS), max_size=10, unique=True),
    rows=_ROWS,
    csv_too=st.booleans(),
)
def test_the_count_ahead_always_agrees_with_the_walk(
    files: list[tuple[str, str]],
    rows: list[str],
    csv_too: bool,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("tree")
    for name, ext in files:
        path = root / (name + ext)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    (root / "metadata.jsonl").write_text("\n".join(rows))
    if csv_too:
        (root / "sub").mkdir(exist_ok=True)
        (root / "sub" / "metadata.csv").write_text("file_name,text\nd.png,d\n")
    found, stats = walk(root)
    counted = WalkStats()
    assert count_entries(root, stats=counted) == max(len(found), 1)
    assert counted.skipped == stats.skipped
    images = sum(1 for _, ext in files if ext == ".png")
    captions = stats.captions
    assert (
        captions.sidecar + captions.metadata + captions.none
        == sum(isinstance(r, Item) for r in found)
        <= images
    )


def test_a_folder_named_like_a_caption_file_is_walked_not_read(tmp_path: Path) -> None:
    touch(tmp_path, "a.png", "a.txt/b.png")
    found, _ = walk(tmp_path)
    assert [(r.key, r.caption) for r in found if isinstance(r, Item)] == [
        ("a.png", None),
        ("a.txt/b.png", None),
    ]


def test_an_image_whose_caption_file_is_bad_is_named_by_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Newcomer finding: `run` said "rejected /abs/folder: ..." and `validate --each` "2: ...",
    the folder or the walk's place, where every other folder problem names the image."""
    make_image(tmp_path / "a.png", "png", 256, 1)
    make_image(tmp_path / "b.png", "png", 256, 2)
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe not UTF-8")
    assert main(["validate", str(tmp_path), "--provider", "novita", "--each"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("b.png: rejected: caption file is not UTF-8 (byte 0 is 0xff)")
    found, _ = walk(tmp_path)
    state = Replay(header=Header("novita", str(tmp_path)))
    caps = Capabilities(formats=frozenset({ImageType.PNG}), max_size=None, url_lifetime_s=None)
    triage = Triage(
        state, Checker(caps, "novita"), finalize=False, retry_failed=False, reupload_changed=False
    )
    rejected = triage(found[1])
    assert isinstance(rejected, Rejected) and rejected.key == "b.png"  # what `run` prints


def test_captions_from_two_sources_are_named_as_two() -> None:
    # Newcomer8: a folder with a tar and a Parquet file said "23 from json members, column
    # 'text', 5 without a caption", as if "column 'text'" were a third count.
    two = Captions(sidecar=10, metadata=23, none=5, files=("json members", "column 'text'"))
    assert two.describe() == (
        "captions: 10 from caption files, 23 from json members and column 'text', "
        "5 without a caption"
    )
    assert Captions(metadata=2, files=("a", "b", "c")).describe() == (
        "captions: 2 from a, b and c, 0 without a caption"
    )
