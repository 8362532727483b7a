"""The journal: replay, torn tails, damage, binding, locking, compaction, secrets."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import JournalCorrupt, JournalLocked, JournalMismatch
from ingest.journal import Header, Journal, compact, replay

HEADER = Header(provider="novita", manifest="/data/m.jsonl", created=1.0)


def write_records(path: Path, records: Sequence[dict[str, Any]]) -> None:
    journal, _ = Journal.open(path, HEADER)
    with journal:
        for rec in records:
            journal.record(rec)


def test_new_journal_replays_empty(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal, state = Journal.open(path, HEADER)
    journal.close()
    assert state.counts() == {"done": 0, "failed": 0, "rejected": 0, "in_flight": 0}
    assert replay(path).header == HEADER


def test_state_is_last_record_per_key(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_records(
        path,
        [
            {"s": "run", "t": 1},
            {"s": "acq", "k": "a", "r": "1"},
            {"s": "done", "k": "a", "r": "1", "z": 10, "m": 5},
            {"s": "acq", "k": "b", "r": "2"},
            {"s": "fail", "k": "c", "a": "fail_item", "c": "x", "e": "no"},
            {"s": "bad", "l": 9, "e": "bad json"},
            {"s": "end", "n": 4},
        ],
    )
    state = replay(path)
    assert state.is_done("a")
    assert not state.is_done("b")
    assert state.counts() == {"done": 1, "failed": 1, "rejected": 1, "in_flight": 1}
    assert state.total == 4
    assert state.runs == 1


def test_unkeyed_rejections_count_only_for_the_latest_run(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_records(path, [{"s": "run"}, {"s": "bad", "l": 1, "e": "x"}, {"s": "run"}])
    assert replay(path).counts()["rejected"] == 0


def test_torn_last_line_is_tolerated_and_cut_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_records(path, [{"s": "done", "k": "a", "r": "1"}])
    with path.open("ab") as fh:
        fh.write(b'{"s":"done","k":"b"')
    state = replay(path)
    assert state.torn_tail
    assert state.is_done("a") and not state.is_done("b")
    journal, _ = Journal.open(path, HEADER)
    with journal:
        journal.record({"s": "done", "k": "c", "r": "3"})
    again = replay(path)
    assert not again.torn_tail
    assert again.is_done("a") and again.is_done("c")


def test_damage_in_the_middle_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_records(path, [{"s": "done", "k": "a", "r": "1"}, {"s": "done", "k": "b", "r": "2"}])
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = b'{"s":"do\x00ne"\n'
    path.write_bytes(b"".join(lines))
    with pytest.raises(JournalCorrupt) as info:
        replay(path)
    assert info.value.line == 2
    assert ":2:" in str(info.value)


def test_not_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_text("hello\n")
    with pytest.raises(JournalCorrupt):
        Journal.open(path, HEADER)


def test_binding_to_provider_and_manifest(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_records(path, [])
    other = Header(provider="scenario", manifest="/data/m.jsonl")
    with pytest.raises(JournalMismatch, match="provider"):
        Journal.open(path, other)
    with pytest.raises(JournalMismatch, match="manifest"):
        Journal.open(path, Header(provider="novita", manifest="/elsewhere.csv"))
    journal, _ = Journal.open(path, other, force=True)
    journal.close()


def test_second_open_is_refused_while_locked(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal, _ = Journal.open(path, HEADER)
    try:
        with pytest.raises(JournalLocked, match=str(os.getpid())):
            Journal.open(path, HEADER)
    finally:
        journal.close()
    journal, _ = Journal.open(path, HEADER)  # free again once closed
    journal.close()


def test_compaction_keeps_the_last_record_of_every_key(tmp_path: Path) -> None:
    path = tmp_path / "j"
    records: list[dict[str, object]] = [{"s": "run"}]
    for i in range(200):
        records.append({"s": "acq", "k": f"k{i}", "r": str(i)})
        records.append({"s": "done", "k": f"k{i}", "r": str(i), "z": i, "m": i})
    records.append({"s": "acq", "k": "open", "r": "x"})
    records.append({"s": "end", "n": 201})
    write_records(path, records)
    before = replay(path)
    dropped = compact(path)
    after = replay(path)
    assert dropped == 200
    assert after.done == before.done
    assert after.pending == before.pending
    assert after.total == 201
    size = path.stat().st_size
    assert size / 201 < 200, "at most 200 bytes per item after compaction"


def test_records_written_without_secrets_stay_small(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_records(
        path,
        [
            {
                "s": "done",
                "k": "images/000001.png",
                "r": "100001",
                "z": 65536,
                "m": 1732160000123456789,
            }
        ],
    )
    line = path.read_bytes().splitlines()[1]
    assert len(line) < 120
    assert orjson.loads(line)["r"] == "100001"


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["acq", "up", "done", "fail"]), st.integers(0, 20)), max_size=60
    ),
    cut=st.integers(0, 200),
)
def test_replay_after_a_cut_anywhere_in_the_last_record(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]], cut: int
) -> None:
    """Whatever byte the last write stopped at, replay yields the state of the complete records."""
    path = tmp_path_factory.mktemp("j") / "j"
    records = [{"s": state, "k": f"k{n}", "r": "1"} for state, n in ops]
    write_records(path, records)
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    if len(lines) > 1:
        last = lines[-1]
        keep = cut % len(last)
        path.write_bytes(b"".join(lines[:-1]) + last[:keep])
        complete = records[:-1]
    else:
        complete = []
    expected: dict[str, str] = {}
    for rec in complete:
        expected[str(rec["k"])] = str(rec["s"])
    state = replay(path)
    assert {k for k, s in expected.items() if s == "done"} == {
        k for k in expected if state.is_done(k)
    }
    assert {k: s for k, s in expected.items() if s != "done"} == {
        k: str(r["s"]) for k, r in state.pending.items()
    }


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 18])
def test_replay_is_the_same_whatever_the_read_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    """Lines cut across block boundaries, a torn last line, and damage named by its line."""
    import ingest.journal as journal_module

    path = tmp_path / "j"
    header = Header(provider="novita", manifest="m.jsonl", created=0.0)
    records = [orjson.dumps(header.to_record())]
    for index in range(300):
        records.append(orjson.dumps({"s": "acq", "k": f"key-{index}", "r": str(index)}))
        if index % 3:
            records.append(orjson.dumps({"s": "done", "k": f"key-{index}", "r": str(index)}))
    path.write_bytes(b"\n".join(records) + b'\n{"s":"done","k":"key-1')  # torn tail
    expected = replay(path)
    monkeypatch.setattr(journal_module, "_BLOCK", block)
    got = replay(path)
    assert got.counts() == expected.counts() == {
        "done": 200, "failed": 0, "rejected": 0, "in_flight": 100,
    }  # fmt: skip
    assert (got.records, got.good_bytes, got.torn_tail) == (
        len(records) - 1,
        len(b"\n".join(records)) + 1,
        True,
    )
    damaged = tmp_path / "d"
    damaged.write_bytes(b"\n".join([*records[:5], b"{oops", *records[5:]]) + b"\n")
    with pytest.raises(JournalCorrupt, match=r"/d:6: unreadable record"):
        replay(damaged)
