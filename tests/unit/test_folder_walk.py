"""Folder manifests: symlinked directories followed without loops, skipped files counted,
a walk that finds no image a problem (newcomer findings W5 and R3)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest.errors import ManifestError
from ingest.item import Item
from ingest.manifest import SkippedFiles, WalkStats, read_manifest
from tests.images import touch


def keys(root: Path, walk: WalkStats | None = None) -> list[str]:
    return [r.key for r in read_manifest(root, walk=walk) if isinstance(r, Item)]


def test_a_symlinked_subfolder_is_walked_as_the_newcomer_expected(tmp_path: Path) -> None:
    # mkdir -p sl/real sl/top && cp shape_0[0-3]* sl/real/ && ln -s ../real sl/top/linked
    sl = tmp_path / "sl"
    touch(sl / "real", "shape_00.png", "shape_01.jpg", "shape_02.webp", "shape_03.png")
    (sl / "top").mkdir()
    (sl / "top" / "linked").symlink_to("../real", target_is_directory=True)
    found = list(read_manifest(sl / "top"))
    assert [(r.line, r.key) for r in found if isinstance(r, Item)] == [
        (1, "linked/shape_00.png"),
        (2, "linked/shape_01.jpg"),
        (3, "linked/shape_02.webp"),
        (4, "linked/shape_03.png"),
    ]
    assert all(isinstance(r, Item) for r in found)


def test_loops_are_cut_by_the_directories_on_the_path(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    touch(root, "a.png", "b/c.png", "b/d/e.png")
    (root / "b" / "d" / "up").symlink_to("../..", target_is_directory=True)  # to the root
    (root / "b" / "d" / "self").symlink_to(".", target_is_directory=True)
    (root / "b" / "parent").symlink_to("..", target_is_directory=True)
    walk = WalkStats()
    assert keys(root, walk) == ["a.png", "b/c.png", "b/d/e.png"]
    assert walk.skipped == SkippedFiles(files=0, loops=3)


def test_a_link_to_a_folder_above_the_root_is_a_loop(tmp_path: Path) -> None:
    # `photos/up -> ..` would walk the parent, the folder's siblings, then photos/ again.
    touch(tmp_path, "photos/a.png", "sibling/b.png")
    (tmp_path / "photos" / "up").symlink_to("..", target_is_directory=True)
    (tmp_path / "photos" / "top").symlink_to("/", target_is_directory=True)
    walk = WalkStats()
    assert keys(tmp_path / "photos", walk) == ["a.png"]
    assert walk.loops == 2


def test_a_directory_linked_twice_without_a_loop_is_walked_under_each_name(
    tmp_path: Path,
) -> None:
    root = tmp_path / "imgs"
    touch(root, "real/a.png")
    (root / "alias").symlink_to("real", target_is_directory=True)
    walk = WalkStats()
    # Walked under each name, and one item: the later name is the same file (`one_per_file`).
    assert keys(root, walk) == ["alias/a.png"]
    assert walk.loops == 0 and walk.found == 2


def test_a_dangling_directory_link_is_a_non_image_file(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    touch(root, "a.png")
    (root / "gone").symlink_to(tmp_path / "nowhere", target_is_directory=True)
    walk = WalkStats()
    assert keys(root, walk) == ["a.png"]
    assert walk.skipped == SkippedFiles(files=1, examples=("gone",))


def test_non_image_files_are_counted_with_a_few_names(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    touch(root, "a.png", "readme.txt", "Thumbs.db", "sub/raw.cr2", "sub/noext", ".DS_Store")
    walk = WalkStats()
    assert keys(root, walk) == ["a.png"]
    skipped = walk.skipped
    assert (skipped.files, skipped.loops) == (4, 0)  # dot files are skipped uncounted
    assert skipped.describe() == "4 non-image files (Thumbs.db, readme.txt, sub/noext, …)"


def test_a_folder_with_no_image_is_one_problem_saying_what_was_skipped(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    touch(photos, "notes.txt", "a.psd", "sub/x.raw")
    (photos / "sub" / "loop").symlink_to("..", target_is_directory=True)
    [problem] = list(read_manifest(photos))
    assert isinstance(problem, ManifestError)
    assert (problem.source, problem.line) == (str(photos), None)
    assert problem.reason == (
        "no images found (skipped 3 non-image files (a.psd, notes.txt, sub/x.raw), "
        "1 symlinked loop)"
    )


def test_one_skipped_file_reads_in_the_singular(tmp_path: Path) -> None:
    touch(tmp_path, "notes.txt")
    [problem] = list(read_manifest(tmp_path))
    assert isinstance(problem, ManifestError)
    assert problem.reason == "no images found (skipped 1 non-image file (notes.txt))"


def test_a_folder_of_unreadable_directories_only_reports_those(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    touch(tmp_path, "locked/a.png")
    real_scandir = os.scandir

    def scandir(path: str) -> os._ScandirIterator[str]:
        if Path(path) == tmp_path / "locked":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    [problem] = list(read_manifest(tmp_path))
    assert isinstance(problem, ManifestError)
    assert problem.reason == "cannot read directory locked/: Permission denied"
