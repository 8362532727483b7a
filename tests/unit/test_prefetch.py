"""Read-ahead of small files at validation: the bytes, the budget, and giving it back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest.capabilities import Capabilities
from ingest.item import Item, Source
from ingest.prefetch import Prefetch, release
from ingest.sniff import ImageType
from ingest.validate import Checker, Limits, check
from tests.images import make_image

LIMITS = Limits(formats=frozenset(ImageType), max_size=None)


def source_of(path: Path, prefetch: Prefetch | None) -> Source:
    result = check(Item(key=path.name, path=path, line=1), LIMITS, prefetch=prefetch)
    assert isinstance(result, Source), result
    return result


def test_a_small_file_comes_with_its_bytes_while_the_budget_lasts(tmp_path: Path) -> None:
    paths = []
    for index in range(3):
        paths.append(tmp_path / f"{index}.png")
        make_image(paths[-1], "png", 1_000, seed=index)
    prefetch = Prefetch(budget=2_500, max_file=4_000)
    first, second, third = (source_of(path, prefetch) for path in paths)
    assert first.body == paths[0].read_bytes() and second.body == paths[1].read_bytes()
    assert third.body is None  # over the budget: read at upload time
    assert prefetch.in_use == 2_000
    assert release(first, prefetch).body is None and prefetch.in_use == 1_000
    assert source_of(paths[2], prefetch).body == paths[2].read_bytes()


def test_large_files_and_no_budget_read_nothing_ahead(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    make_image(path, "png", 5_000, seed=1)
    assert source_of(path, Prefetch(max_file=4_999)).body is None
    assert source_of(path, None).body is None


def test_a_rejected_file_gives_its_bytes_back(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(b"%PDF-1.4 not an image" * 50)
    prefetch = Prefetch()
    result = check(Item(key="a", path=path, line=1), LIMITS, prefetch=prefetch)
    assert not isinstance(result, Source)
    assert prefetch.in_use == 0


def test_the_name_limit_gives_the_bytes_back(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    make_image(path, "png", 1_000, seed=1)
    caps = Capabilities(
        formats=frozenset(ImageType), max_size=None, url_lifetime_s=None, same_name_limit=1
    )
    prefetch = Prefetch()
    checker = Checker(caps, "autoenhance", prefetch=prefetch)
    assert isinstance(checker(Item(key="a", path=path, line=1)), Source)
    assert not isinstance(checker(Item(key="b", path=path, line=2)), Source)
    assert prefetch.in_use == 1_000  # only the accepted one holds bytes


def test_a_file_that_changes_size_during_the_read_keeps_no_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.png"
    make_image(path, "png", 1_000, seed=1)
    real_read = os.read

    def read_grown(fd: int, n: int) -> bytes:
        return real_read(fd, n) + b"x"  # as if the file grew after its stat

    monkeypatch.setattr(os, "read", read_grown)
    prefetch = Prefetch()
    assert source_of(path, prefetch).body is None
    assert prefetch.in_use == 0


def test_release_keeps_every_field_but_the_bytes(tmp_path: Path) -> None:
    # `release` builds the Source field by field (not `dataclasses.replace`): a field
    # added to Source and not copied there would be lost after every upload.
    import dataclasses

    from ingest.item import Converted

    values = {
        "item": Item("k", tmp_path / "a.png", 3),
        "size": 10,
        "mtime_ns": 5,
        "image_type": ImageType.PNG,
        "body": b"0123456789",
        "converted": Converted(ImageType.JPEG, 12, "sha256:00"),
        "stream": object(),
    }
    assert set(values) == {f.name for f in dataclasses.fields(Source)}, "a new Source field"
    source = Source(**values)  # type: ignore[arg-type]
    prefetch = Prefetch(budget=100)
    assert prefetch.take(10)
    kept = release(source, prefetch)
    assert prefetch.in_use == 0
    assert kept.body is None
    for name, value in values.items():
        if name != "body":
            assert getattr(kept, name) is value, name
