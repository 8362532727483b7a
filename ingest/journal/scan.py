"""Taking a block of journal lines into a `Replay`: the inner loop of `reader.replay`.

Owns the decoding of the records a run writes most, fast, and the proof
that it gives the state a record-by-record `Replay.take` gives.

How it works: `replay` hands over whole lines, 256 KiB at a time. Most of a
run's journal is, per item, an ``acq`` line and the item's ``done`` line
right after it, with nothing else in them (Novita, Scenario; 2·10^6 lines
at 10^6 items). One regular expression finds those pairs and cuts them out
of the block (`_PAIR`, C speed, no JSON object built); what is left (any
other line: other kinds, extras, damage) is parsed by orjson, checked, and
taken in order. Taking the pairs first and the rest after gives the
state of taking the lines in their order when no key is in both, since an
item's state is its key's last record; when one is, or a line left is not a
valid record, the block is taken line by line (`_take_all`), which also
names the first bad line.

Invariants:
- A pair the expression accepts is two lines `Replay.take` accepts as they
  are (JSON strings without escapes or control characters, integers orjson
  reads as ints), so the state is the one the line-by-line take gives, and
  a block holding a bad line is always taken line by line.
- An ``acq`` taken here sets the key's record without taking its digest out
  of `done`: `replay` does that, once, for every key still unfinished at
  the end (a probe saved per acquired item).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, cast

import orjson

from ingest.journal.records import AcqRecord, problem

if TYPE_CHECKING:
    from ingest.journal.reader import Replay

_MASK64 = (1 << 64) - 1
# A JSON string's inside with no escape (the text is the value). Possessive (`*+`, as
# `{0,17}+` below): the next character can never be one of these, so nothing is lost by
# not backtracking, and the expression runs ~30 % faster.
_STR = r'[^"\\\x00-\x1f]*+'
# A JSON integer orjson reads as a Python int (within 64 bits), never "-0" or a float.
_INT = r"(0|-?[1-9][0-9]{0,17}+|[1-9][0-9]{18})"
# An `acq` line and its key's `done` line right after it, exactly as `records` writes them
# (`acquired`, `completed`: fields in that order, no extras): groups key, size, mtime.
_PAIR = re.compile(
    rf'^\{{"s":"acq","k":"({_STR})","r":"{_STR}"\}}\n'
    rf'\{{"s":"done","k":"\1","r":"{_STR}","z":{_INT},"m":{_INT}\}}\n',
    re.MULTILINE,
)


def fingerprint(size: int, mtime_ns: int) -> int:
    """A 64-bit fingerprint of a file's size and modification time."""
    return ((size * 0x9E3779B97F4A7C15) ^ mtime_ns) & 0xFFFFFFFFFFFFFFFF


def take_block(state: Replay, body: bytes) -> tuple[int, int, str | None]:
    """Take the lines of `body` (whole lines, without the last newline) into `state`.

    Returns (lines, records taken, why the next line is not a record or None);
    on a bad line, every line before it is taken and none after.
    """
    try:
        text = body.decode()
    except UnicodeDecodeError:
        text = None  # orjson names the line that is not UTF-8
    parts = _PAIR.split(text + "\n") if text is not None else ()
    if len(parts) > 1 and _take_pairs(state, parts):
        lines = body.count(b"\n") + 1
        return lines, lines, None
    recs = _parsed(body)
    taken, why = _take_all(state, recs)
    return len(recs), taken, why


def _take_pairs(state: Replay, parts: list[str]) -> bool:
    """Take the pairs `_PAIR.split` found and the lines between them; False (nothing taken)
    when a line between them is not a valid record or names a key of a pair."""
    keys = parts[1::4]
    rest = "".join(parts[0::4])
    recs = _parsed(rest[:-1].encode()) if rest else []
    paired = set(keys)
    for rec in recs:
        if problem(rec) is not None or (type(key := rec.get("k")) is str and key in paired):
            return False
    digests = list(map(_MASK64.__and__, map(hash, keys)))  # `key_digest`, in C
    if 0 in digests:
        digests = [digest or 1 for digest in digests]
    if state.fingerprints:
        sizes, mtimes = map(int, parts[2::4]), map(int, parts[3::4])
        state.done.add_all(digests, list(map(fingerprint, sizes, mtimes)))
    else:
        state.done.add_all(digests)
    unfinished = state.unfinished
    if unfinished:
        for key in unfinished.keys() & paired:
            del unfinished[key]
    taken, why = _take_all(state, recs)
    assert why is None and taken == len(recs)  # each was checked above
    return True


def _parsed(body: bytes) -> list[Any]:
    """Each line of `body` (lines without the last newline) parsed, None where it is not JSON.

    One orjson call for the whole block when that is sure to give what a parse
    of each line would: every line starts with ``{`` and ends with ``}``, and
    no ``[`` appears, so no value can continue past a line's end (the comma
    put after each line could only join a value to the next line's inside an
    array), and the parse then gives one value a line exactly when it gives
    as many values as lines. Otherwise (damage, rarer records) line by line.
    """
    if body[:1] == b"{" and body[-1:] == b"}" and b"[" not in body:
        joints = body.count(b"\n")
        if body.count(b"}\n{") == joints:
            try:
                recs: list[Any] = orjson.loads(b"[" + body.replace(b"\n", b",\n") + b"]")
            except orjson.JSONDecodeError:
                pass
            else:
                if len(recs) == joints + 1:
                    return recs
    parsed: list[Any] = []
    for line in body.split(b"\n"):
        try:
            parsed.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            parsed.append(None)
    return parsed


def _take_all(state: Replay, recs: list[Any]) -> tuple[int, str | None]:
    """`state.take` each of `recs` in order: how many were taken, and why the next one was not.

    The shapes a run writes most (``done`` and ``acq`` as the engine writes
    them) are checked as `take` checks them and applied here, each field
    looked up once; an ``acq`` leaves the key's digest in `done` (see above).
    """
    done, unfinished, fingerprints = state.done, state.unfinished, state.fingerprints
    add = done.add
    for index, rec in enumerate(recs):
        if type(rec) is dict:
            size = len(rec)
            kind = rec.get("s")
            if kind == "done" and size == 5:
                key, z, m = rec.get("k"), rec.get("z"), rec.get("m")
                if (
                    type(key) is str
                    and type(rec.get("r")) is str
                    and type(z) is int
                    and type(m) is int
                ):
                    digest = (hash(key) & _MASK64) or 1  # `key_digest`, inlined
                    if fingerprints:
                        add(digest, fingerprint(z, m))
                    else:
                        add(digest)
                    unfinished.pop(key, None)
                    continue
            elif kind == "acq" and size == 3:
                key = rec.get("k")
                if type(key) is str and type(rec.get("r")) is str:
                    unfinished[key] = cast(AcqRecord, rec)
                    continue
        why = state.take(rec)
        if why is not None:
            return index, why
    return len(recs), None
