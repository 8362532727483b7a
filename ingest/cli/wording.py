"""How the commands word counts, sizes, durations and where a problem is.

Owns the small text helpers every command's output uses (`plural`,
`human_bytes`, `human_duration`, `problem_where`, `member_where`, `packed`,
`folder_reason`, `unjournaled_note`, `nothing_to_retry`). It imports nothing of the engine, so `status`, `export`
and `validate` word their lines without importing what a run needs
(`ingest.cli.report` re-exports these names for the run's display).
"""

from __future__ import annotations

from pathlib import Path


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def problem_where(
    line: int | None,
    key: str | None,
    reason: str,
    source: str,
    *,
    folder: bool = False,
    packed: bool = False,
) -> str:
    """How a problem line names its entry: ``line N KEY``, without a key the reason ends with.

    A folder's or path list's key is the file's path, which the reason
    already ends with (absolute): printing both showed the path twice. A
    folder's entry is named by its path in the folder (its "line" is only
    its place in the sorted walk): see `folder_reason` for the reason. A
    shard's or Parquet file's (`packed`) is its member or row (`member_where`):
    its "line" is its place among them, not a line of any file.
    """
    if folder:
        return key or source
    if packed:
        return member_where(key) or source
    where = f"line {line}" if line is not None else source
    if not key or reason.endswith(("/" + key, ": " + key)):
        return where
    return f"{where} {key}"


def member_where(key: str | None) -> str | None:
    """A shard's entry, keyed ``SHARD#MEMBER``, as its user names it: ``member s/001.png of
    s.tar``, or ``row 7 of t.parquet``; None for a key of no member."""
    lowered = (key or "").lower()
    ends = [at for sep in (".tar#", ".zip#", ".parquet#") if (at := lowered.find(sep)) >= 0]
    if not key or not ends:
        return None
    cut = min(ends) + lowered[min(ends) :].index("#")
    shard, member = key[:cut], key[cut + 1 :]
    if not member:
        return None
    if shard.lower().endswith(".parquet") and member.startswith("row-") and member[4:].isdigit():
        return f"row {member[4:]} of {shard}"
    return f"member {member} of {shard}"


def packed(manifest: str | Path, fmt: str | None = None) -> bool:
    """Whether the manifest is a shard or a Parquet file (read as `fmt`, else as its name
    says): its entries are then named by member or row (`member_where`), not by line."""
    from ingest.manifest.probe import manifest_format

    return (fmt or manifest_format(Path(manifest))) in ("tar", "zip", "parquet")


def unjournaled_note(n: int) -> str:
    """Why "uploaded N files" is more than the journal's done: their records were lost."""
    were = "was" if n == 1 else "were"
    return (
        f"{plural(n, 'file')} {were} uploaded but not journaled (the journal could not be "
        "written): the next run checks them, asking the provider where it can, else "
        "uploading them again"
    )


def folder_reason(reason: str, key: str | None) -> str:
    """`reason` without the absolute path it ends with, when that is the folder entry `key`."""
    head, sep, tail = reason.rpartition(": ")
    if sep and key and tail.endswith("/" + key):
        return head
    return reason


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """`n` with the noun that agrees with it: "1 file", "2 files", "1 entry", "3 entries"."""
    if n == 1:
        return f"{n} {noun}"
    if nouns is None:
        consonant_y = noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u")
        nouns = noun[:-1] + "ies" if consonant_y else noun + "s"
    return f"{n} {nouns}"


def human_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def nothing_to_retry(
    run: str, done: int, total: int, rejected: int, status: str, given_up: int = 0
) -> tuple[str, bool]:
    """What `retry-failed` says of a run that ended with nothing failed (`run`: how it is
    named; `status`: the `ingest status` arguments that list its rejected entries), and
    whether every entry is done (exit 0; entries that stay rejected or were given up: 1)."""
    what = [f"{done} of {total} done"]
    if rejected:
        what.append(f"{rejected} rejected, which stay rejected")
    if given_up:
        what.append(f"{plural(given_up, 'item')} in chunks given up (poison)")
    line = f"nothing failed in {run} ({', '.join(what)}): nothing to retry"
    if rejected:
        line += f"; ingest status {status} --failed lists them"
    return line, not rejected and not given_up
