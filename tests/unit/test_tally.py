"""A run's `Tally` ends with the counts a fresh replay of its journal gives.

Runs are generated the way the engine writes them: a `run` record, then for
each key at most one item (some in-flight records, re-signs included, and at
most one final record), keyless rejections, maybe an `end` record; several
runs in a row, each tallied from the replay its start would see.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.journal import Header, replay
from ingest.journal.records import (
    Record,
    acquired,
    completed,
    manifest_end,
    rejected,
    run_started,
)
from ingest.tally import Tally
from tests.journals import record_of

KEYS = [f"k{i}" for i in range(12)]

item = st.tuples(
    st.sampled_from(KEYS),
    st.lists(st.sampled_from(["acq", "up"]), max_size=3),  # in-flight records (re-signs)
    st.sampled_from([None, "done", "fail", "bad"]),  # None: the run stopped mid-item
)
a_run = st.tuples(
    st.lists(item, max_size=10, unique_by=lambda entry: entry[0]),
    st.integers(0, 3),  # keyless rejected lines
    st.booleans(),  # reached the end of the manifest
)


def records_of(items: list[tuple[str, list[str], str | None]], bad: int, end: bool) -> list[Record]:
    out: list[Record] = [run_started(0.0, 1)]
    for key, steps, final in items:
        out.extend(record_of(step, key) for step in steps)
        if final is not None:
            out.append(record_of(final, key))
    out.extend(rejected(n, "bad line") for n in range(bad))
    if end:
        out.append(manifest_end(len(items) + bad))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(a_run, min_size=1, max_size=4))
def test_tally_equals_a_replay_after_every_run(
    tmp_path_factory: pytest.TempPathFactory,
    runs: list[tuple[list[tuple[str, list[str], str | None]], int, bool]],
) -> None:
    path = tmp_path_factory.mktemp("j") / "run.journal"
    header = Header(provider="novita", manifest="m.jsonl", created=0.0)
    path.write_bytes(orjson.dumps(header.to_record()) + b"\n")
    for items, bad, end in runs:
        tally = Tally(replay(path))
        with path.open("ab") as fh:
            for rec in records_of(items, bad, end):
                fh.write(orjson.dumps(rec) + b"\n")
                tally.apply(rec)
        fresh = replay(path)
        assert tally.counts() == fresh.counts()
        assert tally.total == fresh.total


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
