"""Each entry's file is stat'ed once and sniffed once between the manifest and its `Source`.

The reader's same-file check (`dedupe.one_per_file`) takes the stat that
`validate` then uses (`Item.stat`); a large PNG or JPEG, read in parts, is
sniffed once although its tail is read for the truncation check.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest import validate
from ingest.item import Item, Source
from ingest.manifest import read_manifest
from ingest.prefetch import Prefetch
from ingest.sniff import SNIFF_BYTES, ImageType
from ingest.validate import Limits, check
from tests.images import make_image

ALL = Limits(formats=frozenset(ImageType), max_size=None)


def counting(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[object]:
    """Each call of `owner.name` from now on, by its first argument."""
    calls: list[object] = []
    real: Callable[..., Any] = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0] if args else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_a_path_entry_is_stated_once_for_dedupe_and_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_image(tmp_path / "a.png", "png", 3000, seed=1)
    make_image(tmp_path / "b.jpg", "jpeg", 3000, seed=2)
    manifest = tmp_path / "m.jsonl"
    lines = [{"path": "a.png"}, {"path": "b.jpg"}, {"path": "a.png", "id": "own-id"}]
    manifest.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    items = [e for e in read_manifest(manifest) if isinstance(e, Item)]
    assert [i.stat is not None for i in items] == [True, True, False]  # an id: no same-file check
    fstats = counting(monkeypatch, os, "fstat")
    sources = [check(item, ALL) for item in items]
    assert all(isinstance(s, Source) for s in sources)
    assert [s.size for s in sources if isinstance(s, Source)] == [3000, 3000, 3000]
    assert len(fstats) == 1  # only the entry with an id of its own


def test_a_large_png_is_sniffed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    make_image(path, "png", SNIFF_BYTES * 4, seed=3)  # read in parts: its tail read apart
    sniffs = counting(monkeypatch, validate, "sniff")
    result = check(Item(key="big", path=path, line=1), ALL)
    assert isinstance(result, Source) and result.image_type is ImageType.PNG
    assert len(sniffs) == 1


@pytest.mark.parametrize("grown", [5000, SNIFF_BYTES * 6, 2000, SNIFF_BYTES * 2])
@pytest.mark.parametrize("whole", [True, False])
def test_a_file_whose_size_moved_after_the_readers_stat_is_not_called_cut(
    tmp_path: Path, grown: int, whole: bool
) -> None:
    """Its end is not where the stat put it: no truncation verdict, no body; the upload tells."""
    path = tmp_path / "a.png"
    make_image(path, "png", SNIFF_BYTES * 4, seed=4)
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b'{"path": "a.png"}\n')
    (item,) = list(read_manifest(manifest))
    assert isinstance(item, Item) and item.stat is not None
    make_image(path, "png", grown, seed=5)  # after the reader's stat, before the check
    result = check(item, ALL, prefetch=Prefetch() if whole else None)
    assert isinstance(result, Source), result
    assert result.size == SNIFF_BYTES * 4 and result.body is None
