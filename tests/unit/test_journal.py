"""The journal: replay, torn tails, damage, binding, locking, compaction, secrets."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from unittest.mock import patch

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ingest.errors import Action, JournalCorrupt, JournalLocked, JournalMismatch
from ingest.journal import Header, Journal, Replay, compact, peek_header, repair, replay
from ingest.journal.records import (
    Landed,
    Record,
    acquired,
    completed,
    decode,
    failed,
    manifest_end,
    problem,
    rejected,
    run_started,
    uploaded,
)
from tests.journals import record_of

HEADER = Header(provider="novita", manifest="/data/m.jsonl", created=1.0)


def write_records(path: Path, records: list[Record]) -> None:
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
            run_started(1.0, 1),
            acquired("a", "1"),
            completed("a", "1", 10, 5),
            acquired("b", "2"),
            failed("c", 3, Action.FAIL_ITEM, "x", "no"),
            rejected(9, "bad json"),
            manifest_end(4),
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
    write_records(path, [run_started(0.0, 1), rejected(1, "x"), run_started(1.0, 1)])
    assert replay(path).counts()["rejected"] == 0


def test_torn_last_line_is_tolerated_and_cut_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_records(path, [completed("a", "1", 1, 1)])
    with path.open("ab") as fh:
        fh.write(b'{"s":"done","k":"b"')
    state = replay(path)
    assert state.torn_tail
    assert state.is_done("a") and not state.is_done("b")
    journal, _ = Journal.open(path, HEADER)
    with journal:
        journal.record(completed("c", "3", 1, 1))
    again = replay(path)
    assert not again.torn_tail
    assert again.is_done("a") and again.is_done("c")


def test_damage_in_the_middle_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_records(path, [completed("a", "1", 1, 1), completed("b", "2", 1, 1)])
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
    with pytest.raises(JournalMismatch, match="provider"):  # --force never changes the provider
        Journal.open(path, other, force=True)
    moved = Header(provider="novita", manifest="/elsewhere.csv")
    journal, state = Journal.open(path, moved, force=True)
    journal.close()
    rewritten = peek_header(path)
    assert rewritten is not None
    assert state.header.manifest == "/elsewhere.csv" == rewritten.manifest


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
    records: list[Record] = [run_started(0.0, 1)]
    for i in range(200):
        records.append(acquired(f"k{i}", str(i)))
        records.append(completed(f"k{i}", str(i), i, i))
    records.append(acquired("open", "x"))
    records.append(manifest_end(201))
    write_records(path, records)
    before = replay(path)
    dropped = compact(path)
    after = replay(path)
    assert dropped == 200
    assert after.done == before.done
    assert after.unfinished == before.unfinished
    assert after.total == 201
    size = path.stat().st_size
    assert size / 201 < 200, "at most 200 bytes per item after compaction"


def test_records_written_without_secrets_stay_small(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_records(
        path,
        [completed("images/000001.png", "100001", 65536, 1732160000123456789)],
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
    write_records(path, [record_of(state, f"k{n}") for state, n in ops])
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    if len(lines) > 1:
        last = lines[-1]
        keep = cut % len(last)
        path.write_bytes(b"".join(lines[:-1]) + last[:keep])
        complete = ops[:-1]
    else:
        complete = []
    expected: dict[str, str] = {}
    for state_of, n in complete:
        expected[f"k{n}"] = state_of
    state = replay(path)
    assert {k for k, s in expected.items() if s == "done"} == {
        k for k in expected if state.is_done(k)
    }
    assert {k: s for k, s in expected.items() if s != "done"} == {
        k: r["s"] for k, r in state.unfinished.items()
    }


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 18])
def test_replay_is_the_same_whatever_the_read_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    """Lines cut across block boundaries, a torn last line, and damage named by its line."""
    import ingest.journal.reader as reader_module

    path = tmp_path / "j"
    header = Header(provider="novita", manifest="m.jsonl", created=0.0)
    records = [orjson.dumps(header.to_record())]
    for index in range(300):
        records.append(orjson.dumps(acquired(f"key-{index}", str(index))))
        if index % 3:
            records.append(orjson.dumps(completed(f"key-{index}", str(index), 1, 1)))
    path.write_bytes(b"\n".join(records) + b'\n{"s":"done","k":"key-1')  # torn tail
    expected = replay(path)
    monkeypatch.setattr(reader_module, "_BLOCK", block)
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


# --- the typed schema --------------------------------------------------------------------


def test_every_constructor_writes_a_record_decode_accepts() -> None:
    landed = Landed(remote_id="r1", extra={"order_id": "o"}, size=3, mtime_ns=4)
    records: list[Record] = [
        run_started(1.5, 7),
        manifest_end(3),
        acquired("a", "1"),
        acquired("a", "1", {"upload_id": "u"}),
        uploaded("a", "1", 10, 5, {"upload_id": "u"}),
        completed("a", "1", 10, 5),
        completed("a", "1", 10, 5, url="https://cdn/x", extra={"file_id": "f"}),
        failed("b", 2, Action.RETRY, "http_503", "unavailable"),
        failed("b", 2, Action.FAIL_ITEM, "finalize", "refused", landed=landed),
        rejected(None, "not JSON"),
        rejected(4, "missing file", "c"),
    ]
    for rec in records:
        assert decode(orjson.loads(orjson.dumps(rec)), path="j", line=2) == rec
    assert records[8] == {
        "s": "fail", "k": "b", "l": 2, "a": "fail_item", "c": "finalize", "e": "refused",
        "st": "up", "r": "r1", "x": {"order_id": "o"}, "z": 3, "m": 4,
    }  # fmt: skip
    with pytest.raises(ValueError, match="stops the run"):
        failed("b", 2, Action.STOP, "auth", "bad key")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ({"s": "done", "k": "a", "r": "1", "z": 1}, "malformed done record: no 'm'"),
        ({"s": "done", "k": "a", "r": 1, "z": 1, "m": 1}, "'r' should be a string, not int"),
        ({"s": "acq", "k": "a", "r": "1", "x": {"n": 1}}, "'x' holds a value that is not a string"),
        ({"s": "acq", "k": "a", "r": "1", "x": []}, "'x' should be an object, not list"),
        ({"s": "done", "k": "a", "r": "1", "z": 1, "m": 1, "u": None}, "'u' should be a string"),
        ({"s": "fail", "k": "a", "l": 1, "a": "stop", "c": "x", "e": "y"}, "action 'stop'"),
        # Found by review: a landed item's fail record without its remote id was accepted,
        # and a resume finalized it with remote_id "".
        (
            {"s": "fail", "k": "a", "l": 1, "a": "retry", "c": "x", "e": "y", "st": "up"},
            "'st' without 'r', 'z', 'm'",
        ),
        (
            {
                "s": "fail",
                "k": "a",
                "l": 1,
                "a": "retry",
                "c": "x",
                "e": "y",
                "st": "up",
                "r": "1",
                "z": 1,
            },
            "'st' without 'm'",
        ),
        ({"s": "bad", "e": "x"}, "malformed bad record: no 'l'"),
        ({"s": "run", "t": "now", "pid": 1}, "'t' should be a number, not str"),
        ({"s": "gone", "k": "a"}, "unknown record kind 'gone'"),
        ({"s": ["done"]}, "unknown record kind ['done']"),
        ({"k": "a"}, "unknown record kind None"),
        ([1, 2], "unreadable record"),
    ],
)
def test_a_malformed_record_is_named_with_its_line(raw: object, why: str) -> None:
    with pytest.raises(JournalCorrupt, match=r"^j:5: .*" + re.escape(why)):
        decode(raw, path="j", line=5)


def test_a_malformed_record_in_the_middle_stops_replay_and_repair_drops_it(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_records(path, [completed("a", "1", 1, 1), completed("b", "2", 1, 1)])
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(2, b'{"s":"done","k":"x","r":"9"}\n')  # valid JSON, no size or mtime
    path.write_bytes(b"".join(lines))
    with pytest.raises(JournalCorrupt, match=r"/j:3: malformed done record: no 'z', with more"):
        replay(path)
    result = repair(path)
    assert result.dropped == ((3, "malformed done record: no 'z'"),)
    state = replay(path)
    assert state.is_done("a") and state.is_done("b") and not state.is_done("x")


_FIELD_NAMES = ["s", "k", "r", "z", "m", "u", "x", "l", "a", "c", "e", "st", "t", "pid", "n"]
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.floats(allow_nan=False, width=32),
    st.sampled_from(["run", "end", "acq", "up", "done", "fail", "bad", "retry", "fail_item"]),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.one_of(st.text(max_size=2), st.integers()), max_size=2),
)
_REQUIRED: dict[str, dict[str, tuple[type, ...]]] = {
    "run": {"t": (int, float), "pid": (int,)},
    "end": {"n": (int,)},
    "acq": {"k": (str,), "r": (str,)},
    "up": {"k": (str,), "r": (str,), "z": (int,), "m": (int,)},
    "done": {"k": (str,), "r": (str,), "z": (int,), "m": (int,)},
    "fail": {"k": (str,), "l": (int,), "a": (str,), "c": (str,), "e": (str,)},
    "bad": {"l": (int, type(None)), "e": (str,)},
}


_WELL_TYPED = {
    "k": st.text(max_size=3),
    "r": st.text(max_size=3),
    "z": st.integers(0, 9),
    "m": st.integers(0, 9),
    "u": st.text(max_size=3),
    "x": st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2),
    "l": st.integers(1, 9),
    "a": st.sampled_from(["retry", "resign", "fail_item", "stop"]),
    "c": st.text(max_size=3),
    "e": st.text(max_size=3),
    "st": st.sampled_from(["up", "down"]),
    "t": st.one_of(st.integers(0, 9), st.floats(0, 9)),
    "pid": st.integers(1, 9),
    "n": st.integers(0, 9),
}


_OPTIONAL: dict[str, dict[str, type]] = {
    "acq": {"x": dict},
    "up": {"x": dict},
    "done": {"u": str, "x": dict},
    "fail": {"st": str, "r": str, "x": dict, "z": int, "m": int},
    "bad": {"k": str},
}


@st.composite
def raw_records(draw: st.DrawFn) -> dict[str, object]:
    """Mostly well-formed records of every kind, with fields dropped or of the wrong type."""
    raw: dict[str, object] = {"s": draw(st.sampled_from([*_REQUIRED, "gone"]))}
    for name, good in _WELL_TYPED.items():
        choice = draw(st.integers(0, 19))
        if choice == 0:
            raw[name] = draw(_VALUES)
        elif choice > 2:
            raw[name] = draw(good)
    return raw


@settings(max_examples=400, deadline=None)
@given(raw=st.one_of(raw_records(), st.dictionaries(st.sampled_from(_FIELD_NAMES), _VALUES)))
def test_decode_accepts_only_whole_records(raw: dict[str, object]) -> None:
    """Whatever a line holds, decode raises JournalCorrupt or returns every required field typed."""
    if problem(raw) is not None:
        with pytest.raises(JournalCorrupt, match=r"^j:2: "):
            decode(raw, path="j", line=2)
        return
    rec = decode(raw, path="j", line=2)
    required = _REQUIRED[rec["s"]]
    assert all(type(raw[name]) in types for name, types in required.items())
    optional = _OPTIONAL.get(rec["s"], {})
    assert all(type(raw[name]) is kind for name, kind in optional.items() if name in raw)
    if rec["s"] == "fail":
        assert rec["a"] in ("retry", "resign", "fail_item") and rec.get("st", "up") == "up"
        assert "st" not in rec or all(name in rec for name in ("r", "z", "m"))
    extra = raw.get("x") if rec["s"] in ("acq", "up", "done", "fail") else None
    assert extra is None or (
        isinstance(extra, dict) and all(type(v) is str for v in extra.values())
    )


def _state(r: Replay) -> tuple[object, ...]:
    done = sorted(r.done.items()) if r.fingerprints else sorted(r.done)
    return (done, r.unfinished, r.bad_lines, r.total, r.gone, r.runs)


_KEYS = st.one_of(  # mostly one key, so an item moves between states
    st.just("a"),
    st.sampled_from(["", 'q"t', "b\\s", "[1]", "é", "c\x01", "\u2028", "k,{}"]),
)
_INTS = st.sampled_from([0, 1, 4096, -3, 2**63 - 1, 2**64 - 1, 10**19 - 1, 2**64, True, 1.5])
_SHAPES = st.sampled_from(  # the shapes the fast paths take in one step, and near misses
    [
        {"s": "done", "k": "a", "r": "1", "z": 3, "m": 4},
        {"s": "done", "k": "a", "r": "1", "z": True, "m": 4},
        {"s": "done", "k": 1, "r": "1", "z": 3, "m": 4},
        {"s": "done", "k": "a", "r": None, "z": 3, "m": 4},
        {"s": "done", "k": "a", "z": 3, "m": 4, "q": 1},
        {"s": "acq", "k": "a", "r": "1"},
        {"s": "acq", "k": "a", "r": 1},
        {"s": "acq", "k": "a", "q": "1"},
        {"s": "acq", "k": ["a"], "r": "1"},
    ]
)
_DAMAGE = st.sampled_from(
    [b"{oops", b"", b" ", b"\xff\xfe", b"[]", b"null", b"{}", b'{"s":"run","t":1,"pid":1}\r']
)


@st.composite
def journal_lines(draw: st.DrawFn) -> list[bytes]:
    """Lines as a run writes them (acq + done pairs), every other record, and damage."""
    out: list[bytes] = []
    for _ in range(draw(st.integers(0, 14))):
        choice = draw(st.integers(0, 9))
        if choice < 4:  # a pair, sometimes with a size or mtime a JSON int cannot be
            key, remote = draw(_KEYS), draw(st.sampled_from(["1", "", "r\\2"]))
            z, m = draw(_INTS), draw(_INTS)
            out.append(orjson.dumps({"s": "acq", "k": key, "r": remote}))
            out.append(b'{"s":"done","k":%s,"r":"1","z":%s,"m":%s}' % (
                orjson.dumps(key), str(z).encode(), str(m).encode()))  # fmt: skip
        elif choice == 4:  # a key acquired again (a re-sign, a changed file uploaded again)
            out.append(orjson.dumps(acquired(draw(_KEYS), "2")))
        elif choice == 5:
            record = draw(st.one_of(raw_records(), _SHAPES))
            with contextlib.suppress(TypeError):  # an int past 64 bits: no run writes one
                out.append(orjson.dumps(record))
        elif choice == 6:
            out.append(draw(_DAMAGE))
        elif choice == 7:  # two records on one line, or one cut across two
            one, two = orjson.dumps(acquired("a", "1")), orjson.dumps(completed("a", "1", 1, 2))
            out.extend(draw(st.sampled_from([[one + b"," + two], [one[:9], one[9:]]])))
        else:
            out.append(orjson.dumps(record_of(draw(st.sampled_from(["up", "fail", "bad"])), "a")))
    return out


def _line_by_line(path: Path, fingerprints: bool) -> tuple[object, ...] | tuple[int, str]:
    """What replay gives, by the rules spelled out one line at a time (`problem`, `apply`)."""
    *lines, tail = path.read_bytes().split(b"\n")
    state = Replay(Header.from_record(orjson.loads(lines[0]), path), fingerprints=fingerprints)
    good, records, bad = len(lines[0]) + 1, 0, None
    for number, line in enumerate(lines[1:], start=2):
        if bad is not None:
            return bad
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError:
            raw = None
        if (why := problem(raw)) is not None:
            bad = (number, why)
            continue
        state.apply(decode(raw, path=path, line=number))
        records, good = records + 1, good + len(line) + 1
    if tail and bad is not None:
        return bad
    return (*_state(state), records, good, bool(tail) or bad is not None)


_ACQ, _DONE = orjson.dumps(acquired("a", "1")), orjson.dumps(completed("a", "1", 1, 2))
_UP, _BIG = orjson.dumps(uploaded("a", "1", 1, 2)), b'{"s":"done","k":"a","r":"1","z":1,"m":%d}'
_RUN = orjson.dumps(run_started(1.0, 1))


@settings(max_examples=100, deadline=None)
@example(lines=[_ACQ, _DONE, _ACQ], torn=b"", block=1 << 18, fingerprints=False)  # acquired again
@example(lines=[_UP, _ACQ, _DONE], torn=b"", block=1 << 18, fingerprints=True)  # pair after
@example(lines=[_ACQ, _BIG % 2**64], torn=b"", block=1 << 18, fingerprints=True)  # float mtime
@example(lines=[_ACQ, _BIG % (2**64 - 1), b"{oops", _ACQ], torn=b"", block=40, fingerprints=True)
@example(  # two lines that are one record in an array, and one line that is two records
    lines=[_RUN[:-1] + b',"x":[{"b":1}', b'{"c":2}]}', _RUN + b"," + _RUN, _ACQ],
    torn=b"",
    block=1 << 18,
    fingerprints=False,
)
@given(
    lines=journal_lines(),
    torn=st.sampled_from([b"", b'{"s":"do']),
    block=st.sampled_from([1, 40, 1 << 18]),
    fingerprints=st.booleans(),
)
def test_replay_is_the_line_by_line_check_then_apply(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[bytes],
    torn: bytes,
    block: int,
    fingerprints: bool,
) -> None:
    """Whatever the lines, replay's blocks (a run's pairs in one step, one parse a block) give
    the state, the intact length and the damage a check and apply of each line gives."""
    import ingest.journal.reader as reader_module

    path = tmp_path_factory.mktemp("j") / "j"
    header = Header(provider="novita", manifest="m.jsonl", created=0.0)
    path.write_bytes(b"\n".join([orjson.dumps(header.to_record()), *lines]) + b"\n" + torn)
    expected = _line_by_line(path, fingerprints)
    with patch.object(reader_module, "_BLOCK", block):
        if len(expected) == 2:  # (line, why): damage before the last line
            with pytest.raises(JournalCorrupt) as caught:
                replay(path, fingerprints=fingerprints)
            why = str(caught.value).split(": ", 1)[1].split(", with more")[0]
            assert (caught.value.line, why) == expected
            return
        got = replay(path, fingerprints=fingerprints)
    assert (*_state(got), got.records, got.good_bytes, got.torn_tail) == expected


def test_repair_of_a_manifest_says_it_is_no_journal_and_leaves_it(tmp_path: Path) -> None:
    """`ingest repair photos.jsonl` (the manifest, not its journal) said its header was
    damaged and advised moving it aside to start over: the user's manifest."""
    manifest = tmp_path / "photos.jsonl"
    manifest.write_bytes(b'{"path": "a.png"}\n{"path": "b.png"}\n')
    with pytest.raises(JournalCorrupt, match=r"not an ingest journal .*nothing was changed"):
        repair(manifest)
    assert manifest.read_bytes() == b'{"path": "a.png"}\n{"path": "b.png"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos.jsonl"]
