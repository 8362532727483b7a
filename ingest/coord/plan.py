"""The plan of a coordinated run: the manifest cut into chunks, planned once, and its binding.

Owns what every worker agrees on before it uploads anything. Each worker
reads the whole manifest once (`lay_out`, blocking: run it in a thread) to
digest its entries, find its duplicate keys and cut its lines into chunks of
`chunk_lines` entries (a joiner whose manifest file is the planner's, by
`fingerprint`, takes the stored plan's digest instead: `known_layout`); the
first to arrive writes the chunks into the run's stream, the duplicates
beside the plan and creates the consumer group, gated by `SET NX` of the
plan key inside one Lua script, so a plan is written exactly once and never
half (a worker killed mid-plan wrote nothing). Every later worker reads the
stored binding instead and is refused (`RunMismatch`) if it differs: another
plan format (`PLAN_FORMAT`: a plan another version of ingest laid out),
manifest (by its entries' digest, not its path), provider, endpoint or
run-level value; and it takes the stored duplicates, from which each chunk's
read answers every key in line order (`entries.ChunkReader`).

Invariants: chunks cover every manifest line that holds an entry, in order,
without overlap; the digest, the chunks and the duplicates depend on the
manifest only, not on the order a reader yielded its entries in nor on the
process's hash seed (the reader holds a seed-dependent few back: `dedupe`);
a chunk's stream entry is never deleted or trimmed while the run exists
(XAUTOCLAIM silently drops pending entries whose stream entry is gone,
Redis >= 7.0).
"""

from __future__ import annotations

import hashlib
import heapq
from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ingest.coord import CHUNK_LINES
from ingest.coord.names import GROUP, RunKeys
from ingest.errors import ConfigError, ManifestError
from ingest.item import Item
from ingest.manifest.seenkeys import Duplicates

if TYPE_CHECKING:
    from ingest.coord.connection import Connection
    from ingest.coord.entries import Entry
    from ingest.manifest import ManifestFormat


# KEYS: plan, chunks, duplicates. ARGV: the plan's JSON, the duplicates (`Duplicates.text`),
# then one "first last count" per chunk.
_PLAN = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  if ARGV[2] ~= '' then
    redis.call('SET', KEYS[3], ARGV[2])
  end
  for i = 3, #ARGV do
    redis.call('XADD', KEYS[2], '*', 'c', ARGV[i])
  end
  redis.call('XGROUP', 'CREATE', KEYS[2], '@GROUP@', '0', 'MKSTREAM')
  return {1, ARGV[1], ''}
end
return {0, redis.call('GET', KEYS[1]), redis.call('GET', KEYS[3]) or ''}
""".replace("@GROUP@", GROUP)


# Stored in the plan, not compared: a forced --format is what the export reads the manifest
# as (`exporting.manifest_format`); the entries' digest already compares what it reads.
_UNBOUND = frozenset({"chunks", "fingerprint", "manifest_format"})
# How a plan is laid out and its manifest digested (`lay_out`); a plan of another format
# (one of none: planned before it was recorded) cannot be joined whatever the manifest.
PLAN_FORMAT = 2


class RunMismatch(ConfigError):
    """This worker's manifest or settings differ from the run's binding: it is refused."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """A range of manifest lines, as the run's stream holds it."""

    id: str  # the stream entry's id
    first: int  # first manifest line (1-based, inclusive)
    last: int  # last manifest line (inclusive)
    count: int  # entries in it

    @staticmethod
    def decode(entry_id: str, fields: Mapping[str, str]) -> Chunk:
        first, last, count = (int(part) for part in fields["c"].split())
        return Chunk(entry_id, first, last, count)


@dataclass(frozen=True, slots=True)
class Layout:
    """What reading the manifest once told: its entries' digest and its chunks."""

    digest: str
    entries: int
    chunks: tuple[tuple[int, int, int], ...]  # (first, last, count) each
    fingerprint: str | None = None  # `fingerprint` of the manifest read (None: not a file)
    duplicates: Duplicates = field(default_factory=Duplicates)  # what the read found (`dedupe`)
    manifest_format: str | None = None  # the format it was read as when forced (None: by name)


def fingerprint(manifest: Path, fmt: ManifestFormat | None) -> str | None:
    """A digest of the manifest file's path, format and bytes (None: not a regular file).

    Equal fingerprints read as equal entries, so a worker whose fingerprint is the plan's
    takes the plan's layout instead of reading every entry again (`known_layout`): ~1 ms
    of hashing per MiB where `lay_out` costs ~40-60 us an entry. The path is in it
    because an entry's key may depend on where the manifest is."""
    if not manifest.is_file():
        return None
    digest = hashlib.sha256(f"{manifest.absolute()}\0{fmt}\0".encode())
    with manifest.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def known_layout(stored: Mapping[str, Any] | None, fingerprint: str | None) -> Layout | None:
    """The stored plan's layout if this worker's manifest is the planner's file, else None.

    Its chunks are left out: only a planning worker writes them, and a plan is stored."""
    if stored is None or fingerprint is None or stored.get("fingerprint") != fingerprint:
        return None
    fmt = stored.get("manifest_format")  # the same: the fingerprint covers the format
    return Layout(str(stored["manifest"]), int(stored["entries"]), (), fingerprint,
                  manifest_format=str(fmt) if fmt else None)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Planned:
    """The run as stored: its chunk count, and whether this worker planned it."""

    chunks: int
    entries: int
    created: bool
    # The manifest's duplicate lines, as the planner's read found them: a chunk's read
    # (`entries.ChunkReader`) answers from them in line order instead of holding entries.
    duplicates: Duplicates = field(default_factory=Duplicates)


def lay_out(manifest: Path, fmt: ManifestFormat | None, chunk_lines: int = CHUNK_LINES) -> Layout:
    """Read every entry of `manifest` once: the digest of (line, key) and the chunks (blocking)."""
    return read_layout(manifest, fmt, chunk_lines)[0]


def read_layout(
    manifest: Path, fmt: ManifestFormat | None, chunk_lines: int = CHUNK_LINES, keep: int = 0
) -> tuple[Layout, list[Entry] | None]:
    """`lay_out`, and the entries read, in line order, if there were at most `keep` (else None).

    A worker feeds its chunks from those (`entries.ChunkReader`) instead of parsing the
    manifest a second time: each entry costs ~40-60 us to read, ~5 % of a file's CPU.

    The reader gives the entries its duplicate filter held last (`dedupe`), and which
    those are depends on the process's hash seed, so nothing here depends on the read
    order: the digest is a sum over the entries, the chunks are cut in line order."""
    from ingest.manifest import read_manifest
    from ingest.manifest.dedupe import DuplicateKey, Unsettled

    printed = fingerprint(manifest, fmt)
    kept: list[Entry] | None = [] if keep > 0 else None
    cut = _Cut(chunk_lines)
    dup_lines, dup_firsts = array("Q"), array("Q")
    total = entries = 0
    reader = read_manifest(manifest, fmt)
    try:
        for entry in reader:
            if kept is not None:
                # Without the reader's stat: a chunk may run long after this read, and
                # `validate` must take the file's size then, as a chunk's own read would.
                fresh = entry
                if isinstance(fresh, Item) and fresh.stat is not None:
                    fresh = replace(fresh, stat=None)
                kept.append(fresh)
                if len(kept) > keep:
                    kept = None  # too many to hold: the chunks read the manifest again
            if isinstance(entry, ManifestError):
                if entry.line is None:
                    continue  # not a line's entry: reported by whichever chunk reads it
                if isinstance(entry, Unsettled):  # the file changed under this read
                    raise ManifestError(
                        f"the manifest changed while it was read to plan the run (line "
                        f"{entry.line} could not be checked for a duplicate key); nothing "
                        "was planned: run the same command again",
                        source=entry.source,
                    )
                if isinstance(entry, DuplicateKey):
                    dup_lines.append(entry.line)
                    dup_firsts.append(entry.first)
                # The reason, not str(entry): that names the manifest by the path given.
                line, what = entry.line, f"!{entry.reason}"
            else:
                line, what = entry.line, entry.key
            total += _entry_digest(line, what)
            entries += 1
            cut.add(line)
    finally:
        reader.close()
    if kept is not None:
        kept.sort(key=lambda e: e.line or 0)
    digest = hashlib.sha256(b"ingest entries %d\0%d\0" % (PLAN_FORMAT, entries))
    digest.update((total & _MASK256).to_bytes(32, "little"))
    dups = Duplicates.of(dup_lines, dup_firsts)
    return Layout(digest.hexdigest(), entries, cut.chunks(), printed, dups, fmt), kept


_MASK256 = (1 << 256) - 1


def _entry_digest(line: int, what: str) -> int:
    """One entry's share of the manifest's digest: its (line, key) hashed, summed mod 2^256.

    A sum does not depend on the order the entries were read in (a multiset hash;
    colliding needs a chosen set of entries, not a mistake, and the binding guards
    against mistakes). ~1 us an entry, beside ~40-60 us to read it."""
    hashed = hashlib.blake2b(f"{line}\t{what}".encode(), digest_size=32).digest()
    return int.from_bytes(hashed, "little")


class _Cut:
    """Chunks of `chunk_lines` entries in line order, from lines given nearly in order.

    Lines come in increasing order but for the few a reader yields late (`dedupe`'s held
    entries, each below a line already given), so the chunks are cut at the end, from
    the lines kept as runs of consecutive lines (16 bytes a run: a manifest's runs are
    as many as its gaps, blank or held lines) merged with the late ones: the same chunks
    whichever entries were late. A chunk never ends between two entries of one line, so
    chunks never overlap."""

    def __init__(self, chunk_lines: int) -> None:
        self._size = chunk_lines
        self._starts, self._ends, self._late = array("Q"), array("Q"), array("Q")

    def add(self, line: int) -> None:
        ends = self._ends
        if not ends or line > ends[-1] + 1:
            self._starts.append(line)
            ends.append(line)
        elif line == ends[-1] + 1:
            ends[-1] = line
        else:  # at or below a line given: late
            self._late.append(line)

    def _lines(self) -> Iterator[int]:
        for start, end in zip(self._starts, self._ends, strict=True):
            yield from range(start, end + 1)

    def chunks(self) -> tuple[tuple[int, int, int], ...]:
        chunks: list[tuple[int, int, int]] = []
        first = last = count = 0
        for line in heapq.merge(self._lines(), sorted(self._late)):
            if count >= self._size and line != last:
                chunks.append((first, last, count))
                count = 0
            if count == 0:
                first = line
            last, count = line, count + 1
        if count:
            chunks.append((first, last, count))
        return tuple(chunks)


def binding(
    layout: Layout, provider: str, endpoint: str, bind: Mapping[str, str]
) -> dict[str, Any]:
    """The values every worker of a run must share."""
    return {
        "format": PLAN_FORMAT,
        "manifest": layout.digest,
        "entries": layout.entries,
        "chunks": len(layout.chunks),
        "provider": provider,
        "endpoint": endpoint,
        "bind": dict(sorted(bind.items())),
        "fingerprint": layout.fingerprint,
        "manifest_format": layout.manifest_format,
    }


async def plan_run(
    conn: Connection, keys: RunKeys, layout: Layout, bound: Mapping[str, Any]
) -> Planned:
    """Write the plan if nobody has (atomically), else check this worker against it."""
    plan_json = orjson.dumps(dict(bound)).decode()
    chunks = (f"{f} {last} {n}" for f, last, n in layout.chunks)
    argv = [plan_json, layout.duplicates.text(), *chunks]
    script = conn.client.register_script(_PLAN)
    created, stored, dups = await conn.call(
        lambda: script(keys=[keys.plan, keys.chunks, keys.duplicates], args=argv)
    )
    theirs: dict[str, Any] = orjson.loads(stored)
    # The chunk count follows the first worker's --chunk-lines: the plan stored rules; the
    # fingerprint tells only whether a joiner may skip reading its manifest (`known_layout`).
    differ = sorted(
        k for k in set(theirs) | set(bound) if k not in _UNBOUND and theirs.get(k) != bound.get(k)
    )
    if "format" not in theirs and "manifest" not in differ:  # format 2, before it was recorded
        differ = [k for k in differ if k != "format"]
    if differ:
        raise RunMismatch(_mismatch(keys.name, differ, theirs, bound), key="run_name")
    known = layout.duplicates if created else Duplicates.parse(dups)
    return Planned(int(theirs["chunks"]), int(theirs["entries"]), bool(created), known)


def _mismatch(
    name: str, differ: list[str], theirs: Mapping[str, Any], ours: Mapping[str, Any]
) -> str:
    if "format" in differ:  # its digest is another formula's: no other difference is told
        fmt = theirs.get("format")
        theirs_is = f"format {fmt}" if fmt is not None else "an earlier format"
        return (
            f"run {name!r} was planned by another version of ingest (its plan is of "
            f"{theirs_is}, this worker's of format {PLAN_FORMAT}), so its manifest cannot be "
            "compared; this worker is refused: use a new --run-name (or finish the run with "
            "the version that planned it)"
        )
    what = []
    for k in differ:
        if k == "manifest":
            what.append("a manifest with other entries")
        elif k == "entries":
            continue  # follows from the manifest
        else:
            what.append(f"{k} {theirs.get(k)!r} (this worker: {ours.get(k)!r})")
    return (
        f"run {name!r} is bound to {', '.join(what) or 'other settings'}; this worker is "
        "refused: give it the same manifest and settings, or another --run-name"
    )


async def join_run(
    conn: Connection,
    keys: RunKeys,
    layout: Layout,
    provider: str,
    endpoint: str,
    run_params: Callable[[Mapping[str, str]], Mapping[str, str]],
) -> tuple[Planned, dict[str, str]]:
    """Plan or join the run; returns it and the run-level values every worker uses.

    `run_params(previous)` is the provider's (`ProviderClass.run_params`): a
    value the settings do not name comes from the stored plan (an Autoenhance
    order id one worker made up is every worker's), so it is read first; a
    worker that lost the race to plan with a value of its own tries once more
    with the winner's.
    """
    for attempt in (1, 2):
        stored = await read_plan(conn, keys)
        previous = stored.get("bind", {}) if stored and stored.get("provider") == provider else {}
        bind = dict(run_params(previous))
        try:
            planned = await plan_run(conn, keys, layout, binding(layout, provider, endpoint, bind))
        except RunMismatch:
            if attempt == 2 or stored is not None:
                raise
            continue  # another worker planned meanwhile: take its values
        return planned, bind
    raise AssertionError("unreachable")  # pragma: no cover


async def read_plan(conn: Connection, keys: RunKeys) -> dict[str, Any] | None:
    """The run's stored plan (its binding), or None if nobody has planned it."""
    stored: str | None = await conn.call(lambda: conn.client.get(keys.plan))
    return None if stored is None else dict(orjson.loads(stored))
