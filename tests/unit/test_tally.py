"""A run's `Tally` ends with the counts a fresh replay of its journal gives, and those
are the counts of the manifest that run read.

Runs are generated the way the engine writes them: a `run` record, then for
each key of that run's manifest at most one item (some in-flight records,
re-signs included, and at most one final record), keyless rejections, maybe
an `end` record (with what the read no longer listed); several runs in a
row, each tallied from the replay its start would see, each manifest a
subset of the keys, so that items of earlier runs drop out and come back.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import cast

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import ManifestError
from ingest.item import Item
from ingest.journal import Header, replay
from ingest.journal.records import (
    Record,
    acquired,
    completed,
    count_of,
    manifest_end,
    rejected,
    run_started,
)
from ingest.tally import Tally
from tests.journals import record_of

KEYS = [f"k{i}" for i in range(12)]

item = st.tuples(
    st.lists(st.sampled_from(["acq", "up"]), max_size=3),  # in-flight records (re-signs)
    st.sampled_from([None, "done", "fail", "bad"]),  # None: the run stopped mid-item (or skipped)
)
a_run = st.tuples(
    st.dictionaries(st.sampled_from(KEYS), item, max_size=10),  # this run's manifest
    st.integers(0, 3),  # keyless rejected lines
    st.booleans(),  # reached the end of the manifest
)
Items = dict[str, tuple[list[str], str | None]]


def records_of(tally: Tally, items: Items, bad: int, end: bool) -> list[Record]:
    out: list[Record] = [run_started(0.0, 1)]
    listed = tally.watch(Item(key, Path(key), n) for n, key in enumerate(items, start=1))
    for entry in listed:
        assert isinstance(entry, Item)
        steps, final = items[entry.key]
        out.extend(record_of(step, entry.key) for step in steps)
        if final is not None:
            out.append(record_of(final, entry.key))
    out.extend(rejected(n, "bad line") for n in range(bad))
    if end:
        out.append(tally.end_record(len(items) + bad))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(a_run, min_size=1, max_size=4))
def test_tally_equals_a_replay_and_counts_the_manifest(
    tmp_path_factory: pytest.TempPathFactory, runs: list[tuple[Items, int, bool]]
) -> None:
    path = tmp_path_factory.mktemp("j") / "run.journal"
    header = Header(provider="novita", manifest="m.jsonl", created=0.0)
    path.write_bytes(orjson.dumps(header.to_record()) + b"\n")
    last: dict[str, str] = {}  # each key's last record kind, over every run
    for items, bad, end in runs:
        tally = Tally(replay(path))
        with path.open("ab") as fh:
            for rec in records_of(tally, items, bad, end):
                fh.write(orjson.dumps(rec) + b"\n")
                tally.apply(rec)
                key = cast(dict[str, object], rec).get("k")
                if isinstance(key, str):
                    last[key] = rec["s"]
        fresh = replay(path)
        assert tally.counts() == fresh.counts()
        assert tally.removed == fresh.removed
        assert tally.total == (len(items) + bad if end else None)
        if end:  # exactly the counts of this run's manifest, and never above its total
            listed: Counter[str] = Counter(count_of(last[k]) for k in items if k in last)
            listed["rejected"] += bad
            assert tally.counts() == {name: listed[name] for name in tally.counts()}
            assert sum(tally.counts().values()) <= len(items) + bad
            done_elsewhere = [k for k, kind in last.items() if kind == "done" and k not in items]
            assert tally.removed == len(done_elsewhere)


def test_a_resumed_key_moves_from_its_old_state(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    header = Header(provider="novita", manifest="m.jsonl", created=0.0)
    lines = [run_started(0.0, 1), acquired("a", "1"), completed("b", "2", 1, 1)]
    path.write_bytes(b"".join(orjson.dumps(rec) + b"\n" for rec in [header.to_record(), *lines]))
    tally = Tally(replay(path))
    assert tally.counts() == {"done": 1, "failed": 0, "rejected": 0, "in_flight": 1}
    tally.apply(run_started(1.0, 1))
    tally.apply(completed("a", "1", 1, 1))
    assert tally.counts() == {"done": 2, "failed": 0, "rejected": 0, "in_flight": 0}


def test_an_item_gone_from_the_manifest_leaves_the_counts_at_the_end_of_the_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.journal"
    header = Header(provider="novita", manifest="m.jsonl", created=0.0)
    lines = [run_started(0.0, 1), completed("a", "1", 1, 1), completed("b", "2", 1, 1)]
    lines.append(manifest_end(2))
    path.write_bytes(b"".join(orjson.dumps(rec) + b"\n" for rec in [header.to_record(), *lines]))
    tally = Tally(replay(path))
    tally.apply(run_started(1.0, 1))
    assert list(tally.watch(iter([Item("a", Path("a"), 1)])))  # "b" was removed
    before = tally.total
    assert tally.counts()["done"] == 2 and before is None  # not known before the end
    end = tally.end_record(1)
    assert end == {"s": "end", "n": 1, "gone": {"done": 1}}
    tally.apply(end)
    assert (tally.counts()["done"], tally.total, tally.removed) == (1, 1, 1)


def test_a_keyed_manifest_error_is_still_listed_not_gone(tmp_path: Path) -> None:
    # A folder image whose caption file is not UTF-8 is rejected by the reader, with its key.
    # Rejected again by the next run, it is still the manifest's: not counted as gone
    # (the run's 'journal J: … 0 rejected' line said so, while `ingest status` said 1).
    path = tmp_path / "run.journal"
    header = Header(provider="novita", manifest="photos", created=0.0)
    lines = [run_started(0.0, 1), completed("a.png", "1", 1, 1)]
    lines += [rejected(2, "caption file is not UTF-8", key="b.png"), manifest_end(2)]
    path.write_bytes(b"".join(orjson.dumps(rec) + b"\n" for rec in [header.to_record(), *lines]))
    tally = Tally(replay(path))
    tally.apply(run_started(1.0, 1))
    bad = ManifestError("caption file is not UTF-8", source="photos", line=2, key="b.png")
    assert len(list(tally.watch(iter([Item("a.png", Path("a.png"), 1), bad])))) == 2
    tally.apply(rejected(2, "caption file is not UTF-8", key="b.png"))
    end = tally.end_record(2)
    assert end == {"s": "end", "n": 2}
    tally.apply(end)
    assert tally.counts() == {"done": 1, "failed": 0, "rejected": 1, "in_flight": 0}
