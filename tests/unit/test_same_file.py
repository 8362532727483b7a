"""One file, one item: spellings of a path, a symlink and its target, a hard link.

Entries keyed by their path (no ``id``) that name a file an earlier entry
named become an error naming that line; the first one is the item. Entries
with ids of their own stay two items. The same holds in a folder, where a
symlinked file beside its target, or a folder linked in twice, lists a file
twice.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from ingest.errors import ManifestError
from ingest.item import Item
from ingest.manifest import read_manifest
from tests.images import make_image


def read(path: Path) -> list[Item | ManifestError]:
    return list(read_manifest(path))


def same_file_lines(entries: list[Item | ManifestError]) -> dict[int, str]:
    return {
        e.line or 0: e.reason
        for e in entries
        if isinstance(e, ManifestError) and e.reason.startswith("same file as line")
    }


@pytest.fixture
def images(tmp_path: Path) -> Path:
    (tmp_path / "img").mkdir()
    make_image(tmp_path / "img" / "a.png", "png", 300, seed=1)
    make_image(tmp_path / "img" / "b.png", "png", 300, seed=2)
    os.symlink("img/a.png", tmp_path / "link.png")
    os.link(tmp_path / "img" / "b.png", tmp_path / "hard.png")
    return tmp_path


SPELLINGS = ["img/a.png", "./img/a.png", "{abs}/img/a.png", "img//a.png", "img/../img/a.png"]


@pytest.mark.parametrize("fmt", ["jsonl", "txt", "csv"])
def test_spellings_links_and_hard_links_of_one_file_are_one_item(images: Path, fmt: str) -> None:
    written = [p.format(abs=images) for p in SPELLINGS] + ["link.png", "img/b.png", "hard.png"]
    manifest = images / f"m.{fmt}"
    if fmt == "jsonl":
        manifest.write_bytes(b"".join(orjson.dumps({"path": p}) + b"\n" for p in written))
    elif fmt == "csv":
        manifest.write_text("path\n" + "".join(f"{p}\n" for p in written))
    else:
        manifest.write_text("".join(f"{p}\n" for p in written))
    entries = read(manifest)
    first = 2 if fmt == "csv" else 1  # a CSV's line 1 is its header
    items = [e for e in entries if isinstance(e, Item)]
    assert [i.key for i in items] == ["img/a.png", "img/b.png"]
    dups = same_file_lines(entries)
    assert sorted(dups) == [first + n for n in (1, 2, 3, 4, 5, 7)]
    assert dups[first + 1] == (
        f"same file as line {first} (another spelling of its path, or a link to it): "
        f"not uploaded twice, line {first} uploads it"
    )
    assert dups[first + 7].startswith(f"same file as line {first + 6} ")


def test_entries_with_ids_of_their_own_stay_two_items(images: Path) -> None:
    manifest = images / "m.jsonl"
    rows = [
        {"path": "img/a.png", "id": "a-1", "caption": "a red square"},
        {"path": "./img/a.png", "id": "a-2", "caption": "a square, red"},
    ]
    manifest.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    assert [e.key for e in read(manifest) if isinstance(e, Item)] == ["a-1", "a-2"]


def test_a_missing_file_is_left_to_validation(images: Path) -> None:
    manifest = images / "m.txt"
    manifest.write_text("gone.png\ngone.png\nimg/a.png\n")
    entries = read(manifest)
    assert not same_file_lines(entries)  # the repeat is a duplicate key, not a same file
    assert [e.key for e in entries if isinstance(e, Item)] == ["gone.png", "img/a.png"]


def test_a_folder_lists_a_linked_file_once(images: Path) -> None:
    os.symlink("img", images / "same")  # the folder, linked in twice
    (images / "m.txt").unlink(missing_ok=True)
    entries = read(images)
    keys = [e.key for e in entries if isinstance(e, Item)]
    assert keys == ["hard.png", "img/a.png"], keys  # sorted: hard.png first, b.png is its link
    reasons = sorted(same_file_lines(entries).values())
    assert len(reasons) == 4  # img/b.png, link.png, same/a.png, same/b.png
    assert all(r.startswith("same file as line") for r in reasons)
