"""Duplicate keys past the exact table: the Bloom filter, held entries and the second pass.

The expected answer is computed with a plain dict; `read_manifest` must give
the same verdicts (every key once, every repeat an error naming its first
line) whatever the filter's false alarms, which the tests provoke on purpose
by shrinking the exact table and the filter.
"""

from __future__ import annotations

import contextlib
import random
from array import array
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.digestset import DigestSet, digest64
from ingest.errors import ManifestError
from ingest.item import Item
from ingest.manifest import read_manifest
from ingest.manifest.seenkeys import HOLD, FirstLines, SeenKeys, _Bloom


def expected(keys: list[str]) -> dict[int, str]:
    """line → key for unique entries, line → "dup N" for repeats (N: first line)."""
    first: dict[str, int] = {}
    out: dict[int, str] = {}
    for line, key in enumerate(keys, start=1):
        if key in first:
            out[line] = f"dup {first[key]}"
        else:
            first[key] = line
            out[line] = key
    return out


def verdicts(path: Path) -> tuple[dict[int, str], list[int]]:
    out: dict[int, str] = {}
    order: list[int] = []
    for entry in read_manifest(path):
        if isinstance(entry, Item):
            out[entry.line] = entry.key
            order.append(entry.line)
        else:
            assert isinstance(entry, ManifestError) and entry.line is not None
            assert entry.reason.startswith("duplicate id "), entry.reason
            out[entry.line] = "dup " + entry.reason.rsplit("first at line ", 1)[1].rstrip(")")
            order.append(entry.line)
    return out, order


def manifest(tmp_path: Path, keys: list[str]) -> Path:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"id": k, "path": "a.png"}) + b"\n" for k in keys))
    return path


@contextlib.contextmanager
def tiny_tables() -> Iterator[None]:
    """An exact table of 8 keys and a 1-bit-a-key filter: false alarms by the dozen."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SeenKeys, "EXACT_KEYS", 8)
        patch.setattr(_Bloom, "BITS_PER_KEY", 1)
        yield


def test_seen_keys_are_exact_for_the_first_keys_then_hold_maybes() -> None:
    seen = SeenKeys()
    assert seen.check("a", 1) is None
    assert seen.check("a", 2) == 1
    answers = [seen.check(f"k{i}", i) for i in range(3, SeenKeys.EXACT_KEYS + 3)]
    assert answers.count(None) == len(answers)
    # Past the exact table a repeat of a late key is held, a repeat of an early one is exact.
    assert seen.check(f"k{SeenKeys.EXACT_KEYS + 2}", 10**6) is HOLD  # the first past the table
    assert seen.check("a", 10**6 + 1) == 1
    assert seen.filter_bytes == SeenKeys.EXACT_KEYS * 4 * _Bloom.BITS_PER_KEY // 8


def test_the_filter_is_small_and_rarely_wrong() -> None:
    seen = SeenKeys(expected=200_000)
    holds = sum(seen.check(f"key-{i}", i) is HOLD for i in range(200_000))
    assert seen.filter_bytes <= 200_000 * 2  # two bytes a key
    assert holds < 200_000 * 0.002  # ~0.07 % expected


def test_first_lines_notes_held_keys_and_answers_hold_on_held_lines() -> None:
    held = DigestSet()
    held.add(digest64("b"))
    first = FirstLines(array("Q", [4]), held)
    answers = [first.check(key, line) for line, key in enumerate(["a", "b", "c", "b"], start=1)]
    assert answers == [None, None, None, HOLD]
    assert first.lines.get(digest64("b")) == 2 and first.seen == 1


def test_many_false_alarms_still_give_exact_verdicts(tmp_path: Path) -> None:
    rng = random.Random(7)
    keys = [f"k{rng.randrange(400)}" for _ in range(1_000)]
    with tiny_tables():
        got, order = verdicts(manifest(tmp_path, keys))
    assert got == expected(keys)
    assert sorted(order) == list(range(1, len(keys) + 1))  # every line answered once


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=120))
def test_verdicts_match_a_dict_whatever_the_keys(
    tmp_path_factory: pytest.TempPathFactory, ids: list[int]
) -> None:
    keys = [f"id-{i}" for i in ids]
    with tiny_tables():
        got, _ = verdicts(manifest(tmp_path_factory.mktemp("m"), keys))
    assert got == expected(keys)


def test_a_manifest_that_changed_before_the_second_pass_uploads_no_held_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest.manifest import dedupe as manifest_dedupe

    keys = [f"k{i % 50}" for i in range(200)]  # every key four times
    path = manifest(tmp_path, keys)
    identities = iter([(1, 1, 1, 1), (1, 1, 1, 2)])  # before and after the first pass
    monkeypatch.setattr(manifest_dedupe, "_identity", lambda _path: next(identities))
    with tiny_tables():
        entries = list(read_manifest(path))
    assert sorted(entry.line or 0 for entry in entries) == list(range(1, 201))
    unsettled = [
        e for e in entries if isinstance(e, ManifestError) and "could not check" in e.reason
    ]
    assert unsettled and all("run the same command again" in e.reason for e in unsettled)
    items = [e for e in entries if isinstance(e, Item)]
    assert len({item.key for item in items}) == len(items)  # nothing twice


def test_a_manifest_gone_before_the_second_pass_is_an_error_per_held_line(tmp_path: Path) -> None:
    keys = [f"k{i % 30}" for i in range(90)]
    path = manifest(tmp_path, keys)
    with tiny_tables():
        reader = read_manifest(path)
        first = [next(reader) for _ in range(40)]  # well into the first pass
        path.unlink()
        rest = list(reader)
    entries = first + rest
    assert sorted(entry.line or 0 for entry in entries) == list(range(1, 91))
    items = [e for e in entries if isinstance(e, Item)]
    assert len({item.key for item in items}) == len(items)
