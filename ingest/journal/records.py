"""The journal's records: the one typed schema of every line, and its decoder.

Owns what a journal line may hold. Line 1 is the header (its shape is shown
here with the others; `Header` itself lives in `ingest.journal.header`); every
later line is one record, a JSON object whose ``s`` names its kind. Fields, exactly as the
engine writes them (keys are short because a run of 10^6 items writes 2·10^6
lines):

    header  {"journal":"ingest-journal", "v":1, "provider":name, "manifest":path,
             "endpoint"?:"emulator" or base URL, "bind":{setting: value},
             "created":unix time}
            `endpoint` is where items went: the built-in emulator, or the API's
            base URL without credentials, query or fragment (absent in journals
            written before it was recorded: unknown). `bind` holds the
            provider's run-level values (`run_params`: a model or order id,
            Scenario's mode and preset). Neither ever holds a secret.
    run     {"s":"run", "t":unix time, "pid":process id}
            a run (or resume) started
    end     {"s":"end", "n":entries, "gone"?:{count: items}, "mi"?:manifest identity,
             "ch"?:changed}
            the manifest was read to its end (`n` entries, rejected ones included);
            `gone` counts, by the state the journal held them in ("done",
            "failed", "rejected", "in_flight"), the items of earlier runs this
            read no longer listed (removed from the manifest or folder): a
            replay subtracts them until the next `end` (see `reader.Replay`);
            `mi` identifies the manifest file that read began with (device,
            inode, size, mtime), so `ingest status` can tell it is unchanged;
            `ch` counts the done items whose file this read found changed since
            its upload and that were not uploaded again (`--reupload-changed`)
    acq     {"s":"acq", "k":key, "r":remote id, "x"?:{extra}}
            an upload target was acquired (again on every re-sign)
    up      {"s":"up", "k":key, "r":remote id, "z":size, "m":mtime ns, "x"?:{extra},
             "cv"?:conversion}
            the bytes landed and finalize is pending (providers with a finalize step)
    done    {"s":"done", "k":key, "r":remote id, "z":size, "m":mtime ns,
             "u"?:final url, "x"?:{extra}, "cv"?:conversion}
            the item is finished; `z`/`m` fingerprint the file for a resume's
            changed-file check (the original's, when `--convert` converted it:
            then `cv` is "ORIGINAL-TYPE sha256:HEX" of the bytes uploaded)
    fail    {"s":"fail", "k":key, "l":manifest line, "a":action, "c":code, "e":message}
            the item failed; `a` is the error's class ("retry", "resign",
            "fail_item": a STOP error stops the run and is not journaled).
            When only finalize failed, the record also carries what a resume
            needs to finalize without uploading again:
            "st":"up", "r":remote id, "x"?:{extra}, "z":size, "m":mtime ns
            (with `st`, `r`, `z` and `m` are required)
    bad     {"s":"bad", "k"?:key, "l":manifest line or null, "e":reason}
            rejected locally (manifest or validation); without `k` when the
            manifest line has no usable key

`x` (extra) maps provider field names to strings (never a secret). Fields a
later version adds are ignored; a record missing a field, with a field of the
wrong type, or of an unknown kind is malformed.

How it works: `Record` is the union of the TypedDicts below, tagged by their
``s`` Literal, so `match rec["s"]` narrows it. Records are built by the
constructors (`acquired`, `uploaded`, ...) and read back through `decode`,
which validates a raw JSON value once, at the edge (replay, repair, export).

Invariants:
- Every record `decode` returns has every required field of its kind, with
  the type this schema gives it; it is the same dict, not a copy (a replay
  decodes 2·10^6 of them).
- An item's state is its key's last record; `count_of` names the count it
  falls under, and `landed_of`, `failed_before`, `acquired_of` and `file_of`
  read what it holds, so no other module interprets raw keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, NotRequired, TypeAlias, TypedDict, cast

from ingest.errors import Action, JournalCorrupt

Kind: TypeAlias = Literal["run", "end", "acq", "up", "done", "fail", "bad"]
FailAction: TypeAlias = Literal["retry", "resign", "fail_item"]
Count: TypeAlias = Literal["done", "failed", "rejected", "in_flight"]


class RunRecord(TypedDict):
    s: Literal["run"]
    t: float
    pid: int


class EndRecord(TypedDict):
    s: Literal["end"]
    n: int
    gone: NotRequired[dict[str, int]]
    mi: NotRequired[str]
    ch: NotRequired[int]


class AcqRecord(TypedDict):
    s: Literal["acq"]
    k: str
    r: str
    x: NotRequired[dict[str, str]]


class UpRecord(TypedDict):
    s: Literal["up"]
    k: str
    r: str
    z: int
    m: int
    x: NotRequired[dict[str, str]]
    cv: NotRequired[str]


class DoneRecord(TypedDict):
    s: Literal["done"]
    k: str
    r: str
    z: int
    m: int
    u: NotRequired[str]
    x: NotRequired[dict[str, str]]
    cv: NotRequired[str]


class FailRecord(TypedDict):
    s: Literal["fail"]
    k: str
    l: int  # noqa: E741  # the field's name in the file
    a: FailAction
    c: str
    e: str
    st: NotRequired[Literal["up"]]
    r: NotRequired[str]
    x: NotRequired[dict[str, str]]
    z: NotRequired[int]
    m: NotRequired[int]


class BadRecord(TypedDict):
    s: Literal["bad"]
    k: NotRequired[str]
    l: int | None  # noqa: E741
    e: str


Record: TypeAlias = (
    RunRecord | EndRecord | AcqRecord | UpRecord | DoneRecord | FailRecord | BadRecord
)
# The last record of an item that is not done: what a replay keeps whole.
Unfinished: TypeAlias = AcqRecord | UpRecord | FailRecord | BadRecord


# -- constructors ------------------------------------------------------------

_NO_EXTRA: Final[Mapping[str, str]] = MappingProxyType({})


def run_started(t: float, pid: int) -> RunRecord:
    return {"s": "run", "t": t, "pid": pid}


def manifest_end(
    entries: int,
    gone: Mapping[str, int] | None = None,
    identity: str | None = None,
    changed: int = 0,
) -> EndRecord:
    """The end of a full read: `entries` read, `gone` items of earlier runs it no longer listed.

    `changed`: done items whose file the read found changed since upload (kept as they were).
    """
    rec: EndRecord = {"s": "end", "n": entries}
    kept = {name: n for name, n in (gone or {}).items() if n}
    if kept:
        rec["gone"] = kept
    if identity is not None:
        rec["mi"] = identity
    if changed:
        rec["ch"] = changed
    return rec


def acquired(key: str, remote_id: str, extra: Mapping[str, str] = _NO_EXTRA) -> AcqRecord:
    rec: AcqRecord = {"s": "acq", "k": key, "r": remote_id}
    if extra:
        rec["x"] = dict(extra)
    return rec


def uploaded(
    key: str, remote_id: str, size: int, mtime_ns: int, extra: Mapping[str, str] = _NO_EXTRA
) -> UpRecord:
    rec: UpRecord = {"s": "up", "k": key, "r": remote_id, "z": size, "m": mtime_ns}
    if extra:
        rec["x"] = dict(extra)
    return rec


def completed(
    key: str,
    remote_id: str,
    size: int,
    mtime_ns: int,
    *,
    url: str | None = None,
    extra: Mapping[str, str] = _NO_EXTRA,
) -> DoneRecord:
    rec: DoneRecord = {"s": "done", "k": key, "r": remote_id, "z": size, "m": mtime_ns}
    if url:
        rec["u"] = url
    if extra:
        rec["x"] = dict(extra)
    return rec


@dataclass(frozen=True, slots=True)
class Landed:
    """What a failed finalize keeps so a resume can finalize without uploading again."""

    remote_id: str
    extra: Mapping[str, str]
    size: int
    mtime_ns: int


_ACTIONS: Final[Mapping[Action, FailAction]] = {
    Action.RETRY: "retry",
    Action.RESIGN: "resign",
    Action.FAIL_ITEM: "fail_item",
}


def failed(
    key: str, line: int, action: Action, code: str, message: str, *, landed: Landed | None = None
) -> FailRecord:
    """A `fail` record; `landed` when only finalize failed. A STOP error is never journaled."""
    if action not in _ACTIONS:
        raise ValueError(f"{action} stops the run; it is not journaled")
    rec: FailRecord = {
        "s": "fail",
        "k": key,
        "l": line,
        "a": _ACTIONS[action],
        "c": code,
        "e": message,
    }
    if landed is not None:
        rec["st"] = "up"
        rec["r"] = landed.remote_id
        rec["x"] = dict(landed.extra)
        rec["z"] = landed.size
        rec["m"] = landed.mtime_ns
    return rec


def rejected(line: int | None, reason: str, key: str | None = None) -> BadRecord:
    rec: BadRecord = {"s": "bad", "l": line, "e": reason}
    if key is not None:
        rec["k"] = key
    return rec


def landed_of(rec: Unfinished | None) -> Landed | None:
    """What an item whose bytes landed earlier kept, else None.

    Landed: journaled `up`, or a finalize that failed (`fail` with `st: up`);
    a resume finalizes it and never uploads it again.
    """
    if rec is None:
        return None
    if rec["s"] == "up":
        return Landed(rec["r"], rec.get("x", _NO_EXTRA), rec["z"], rec["m"])
    if rec["s"] == "fail" and "st" in rec:
        # `decode` guarantees r, z and m beside `st` (a record without them is malformed).
        return Landed(rec["r"], rec.get("x", _NO_EXTRA), rec["z"], rec["m"])
    return None


def failed_before(rec: Unfinished | None) -> bool:
    """A provider refused the item for good (`fail` with `fail_item`): not retried unless asked."""
    return rec is not None and rec["s"] == "fail" and rec["a"] == "fail_item"


def acquired_of(rec: Unfinished | None) -> tuple[str, Mapping[str, str]] | None:
    """(remote id, extra) of an item whose last record is `acq` (a killed run signed it)."""
    if rec is None or rec["s"] != "acq":
        return None
    return rec["r"], rec.get("x", _NO_EXTRA)


def file_of(rec: Unfinished | None) -> tuple[int, int]:
    """The (size, mtime ns) an item's last record holds; (0, 0) when it holds none."""
    if rec is None or rec["s"] == "acq" or rec["s"] == "bad":
        return 0, 0
    return rec.get("z", 0), rec.get("m", 0)


_COUNTS: Final[Mapping[str, Count]] = {"done": "done", "fail": "failed", "bad": "rejected"}


def count_of(kind: str) -> Count:
    """The count ("done", "failed", "rejected", "in_flight") an item whose last record is `kind` falls under."""
    return _COUNTS.get(kind, "in_flight")


# -- decoding ----------------------------------------------------------------

_STR: Final = (str,)
_INT: Final = (int,)
_NUMBER: Final = (int, float)
_LINE: Final = (int, type(None))
_EXTRA: Final = (dict,)
# kind -> (required fields, optional fields), each (name, allowed types).
_FIELDS: Final[dict[str, tuple[tuple[tuple[str, tuple[type, ...]], ...], ...]]] = {
    "run": ((("t", _NUMBER), ("pid", _INT)), ()),
    "end": ((("n", _INT),), (("gone", _EXTRA), ("mi", _STR), ("ch", _INT))),
    "acq": ((("k", _STR), ("r", _STR)), (("x", _EXTRA),)),
    "up": ((("k", _STR), ("r", _STR), ("z", _INT), ("m", _INT)), (("x", _EXTRA), ("cv", _STR))),
    "done": (
        (("k", _STR), ("r", _STR), ("z", _INT), ("m", _INT)),
        (("u", _STR), ("x", _EXTRA), ("cv", _STR)),
    ),
    "fail": (
        (("k", _STR), ("l", _INT), ("a", _STR), ("c", _STR), ("e", _STR)),
        (("st", _STR), ("r", _STR), ("x", _EXTRA), ("z", _INT), ("m", _INT)),
    ),
    "bad": ((("l", _LINE), ("e", _STR)), (("k", _STR),)),
}
_FAIL_ACTIONS: Final = frozenset(_ACTIONS.values())
_WITH_EXTRA: Final = frozenset(
    kind for kind, (_, optional) in _FIELDS.items() if ("x", _EXTRA) in optional
)
_TYPE_NAMES: Final = {str: "a string", int: "an integer", dict: "an object"}


def problem(raw: object) -> str | None:
    """Why `raw` (one parsed line) is not a valid record, or None when it is one."""
    # The shapes a run writes most (2·10^6 lines a replay), accepted at a glance;
    # anything else (extras, rarer kinds, damage) takes the full check below.
    if type(raw) is dict and len(raw) in (3, 5):
        try:
            kind = raw["s"]
            if kind == "done" or kind == "up":
                if (
                    len(raw) == 5
                    and type(raw["k"]) is str
                    and type(raw["r"]) is str
                    and type(raw["z"]) is int
                    and type(raw["m"]) is int
                ):
                    return None
            elif kind == "acq" and type(raw["k"]) is str and type(raw["r"]) is str:
                return None
        except KeyError:
            pass
    return _problem(raw)


def _problem(raw: object) -> str | None:
    if type(raw) is not dict:
        return "unreadable record"
    kind = raw.get("s")
    spec = _FIELDS.get(kind) if isinstance(kind, str) else None
    if spec is None or not isinstance(kind, str):
        return f"unknown record kind {kind!r}"
    required, optional = spec
    for name, types in required:
        if name not in raw or type(raw[name]) not in types:
            return _field_problem(kind, name, raw.get(name, _MISSING), types)
    for name, types in optional:
        if name in raw and type(raw[name]) not in types:
            return _field_problem(kind, name, raw[name], types)
    if kind == "fail" and (raw["a"] not in _FAIL_ACTIONS or raw.get("st", "up") != "up"):
        return f"malformed fail record: action {raw['a']!r}, state {raw.get('st')!r}"
    if kind == "fail" and "st" in raw:
        # A landed item's record: a resume finalizes it from these, so none may be missing.
        missing = [name for name in ("r", "z", "m") if name not in raw]
        if missing:
            return f"malformed fail record: 'st' without {', '.join(map(repr, missing))}"
    if kind == "end" and not all(type(v) is int for v in raw.get("gone", {}).values()):
        return "malformed end record: 'gone' holds a count that is not an integer"
    extra = raw.get("x") if kind in _WITH_EXTRA else None  # other kinds: an unknown field
    if extra is not None and not all(type(v) is str for v in extra.values()):
        return f"malformed {kind} record: 'x' holds a value that is not a string"
    return None


_MISSING: Final = object()


def _field_problem(kind: str, name: str, value: object, types: tuple[type, ...]) -> str:
    if value is _MISSING:
        return f"malformed {kind} record: no {name!r}"
    want = "a number" if float in types else _TYPE_NAMES.get(types[0], "a number")
    return f"malformed {kind} record: {name!r} should be {want}, not {type(value).__name__}"


def decode(raw: object, *, path: Path | str, line: int) -> Record:
    """`raw` (one parsed line) as a typed record; `JournalCorrupt` naming `line` if malformed."""
    why = problem(raw)
    if why is not None:
        raise JournalCorrupt(why, path=str(path), line=line)
    return cast(Record, raw)
