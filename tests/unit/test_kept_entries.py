"""A coordinated worker's kept entries (`plan.read_layout`) are checked as they are when their chunk runs.

The planning read keeps a small manifest's entries for the chunks, which may
run long after it; a file rewritten meanwhile must be validated by its size
now (as a chunk's own read of the manifest would), not by the stat the
planning read's same-file check took.
"""

from __future__ import annotations

from pathlib import Path

from ingest.coord.entries import ChunkReader
from ingest.coord.plan import read_layout
from ingest.item import Item, Source
from ingest.sniff import ImageType
from ingest.validate import Limits, check
from tests.images import make_dataset, make_image, write_jsonl_manifest


def test_a_file_rewritten_after_planning_is_checked_at_its_size_now(tmp_path: Path) -> None:
    paths = make_dataset(tmp_path / "img", 3, min_size=2048, max_size=4096)  # png, jpeg, webp
    manifest = write_jsonl_manifest(paths, tmp_path / "m.jsonl", ids=False)  # keyed by path
    layout, kept = read_layout(manifest, None, 10, keep=10)
    assert kept is not None
    make_image(paths[1], "jpeg", 1024, 7)  # written anew, smaller (its name ends .jpg)
    now = paths[1].stat().st_size
    reader = ChunkReader(manifest, None, kept, duplicates=layout.duplicates)
    fed = [e for e in reader.entries(1, 3) if isinstance(e, Item)]
    assert len(fed) == 3
    got = check(fed[1], Limits(frozenset(ImageType), None))
    assert isinstance(got, Source)
    assert got.size == now  # not the planning read's size
    assert got.body is None or len(got.body) == now
