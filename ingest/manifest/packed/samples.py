"""A packed shard as a manifest: its samples grouped WebDataset's way, one item per image member.

Owns how a shard's members become items (`read_shard`, `count_shard`):

- members are grouped into samples as WebDataset's ``base_plus_ext`` does it:
  a member's sample key is its name up to the first dot of its last path
  component (``dir/000123.seg.png`` -> ``dir/000123``, suffix ``seg.png``),
  and a sample is a run of adjacent members with the same key (WebDataset's
  ``group_by_keys``; a ``.tar`` writer puts a sample's files together);
- each member whose suffix ends in an image extension (``jpg``, ``png``,
  ``seg.png``...) is an item, keyed ``<shard name>#<member name>``: stable
  across runs, and the same key a manifest line naming that member gets;
- the sample's ``txt`` or ``caption`` member (in that order) is each image's
  caption; its ``json`` member (an object) is their metadata, and gives the
  caption (its ``caption``, else ``text`` key) when no caption member does;
- other members (``cls``, ``npy``, samples without an image) are counted as
  skipped, as a folder counts its other files.

Invariants: one result per image member, in the shard's order, whatever goes
wrong with it (a truncated member, a caption member that is not UTF-8, a
broken ``json`` member, a name the shard holds twice is that image's
`ManifestError`, named ``shard#member``)
plus one per listing problem; `count_shard` counts the same results without
reading any caption; only one sample is held at a time (and ~11 bytes a
member name, to tell a name the shard holds twice).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import orjson

from ingest.digestset import DigestSet, digest64
from ingest.errors import ManifestError
from ingest.item import Item, Member
from ingest.manifest.folder import IMAGE_EXTENSIONS, WalkStats, no_images
from ingest.manifest.metadata import CAPTION_COLUMNS
from ingest.manifest.packed.access import read_member
from ingest.manifest.packed.members import Listed, ShardKind, list_members, listed_names
from ingest.manifest.sidecar import MAX_CAPTION_BYTES, not_utf8

_BASE_PLUS_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset.tariterators
_CAPTION_SUFFIXES = ("txt", "caption")
_IMAGE_SUFFIXES = frozenset(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)

Sample = list[tuple[Listed, str | None]]  # each member with its suffix (None: no stem.ext name)


def _split(name: str) -> tuple[str, str] | None:
    # WebDataset's base_plus_ext: the regex's answer when the file name has a stem before its
    # first dot, found without the regex (3x cheaper); the odd rest goes to the regex itself.
    start = name.rfind("/") + 1
    dot = name.find(".", start)
    if dot > start:
        return name[:dot], name[dot + 1 :].lower()
    found = _BASE_PLUS_EXT.match(name)
    return (found.group(1), found.group(2).lower()) if found else None


def _is_image(suffix: str | None) -> bool:
    return suffix is not None and suffix.rsplit(".", 1)[-1] in _IMAGE_SUFFIXES


def _samples(listed: Iterator[Listed]) -> Iterator[tuple[str | None, Sample]]:
    """(sample key, its members) runs; a listing problem is a run of its own (key None).

    Each member's name is split once, here: its suffix travels with it.
    """
    key: str | None = None
    run: Sample = []
    for entry in listed:
        if entry.member is None:
            if run:
                yield key, run
            yield None, [(entry, None)]
            key, run = None, []
            continue
        split = _split(entry.member.name)
        this, suffix = split if split else (entry.member.name, None)
        if run and this != key:
            yield key, run
            run = []
        key = this
        run.append((entry, suffix))
    if run:
        yield key, run


def read_shard(
    path: Path,
    kind: ShardKind,
    source: str,
    label: str,
    stats: WalkStats | None = None,
    *,
    inside: bool = False,
) -> Generator[Item | ManifestError, None, None]:
    """The items of the shard at `path`; `label` prefixes their keys (``label#member``).

    `inside`: the shard is one file of a folder's walk (`infolder`), which says
    "no images found" itself.
    """
    stats = stats if stats is not None else WalkStats()
    listed = list_members(str(path), kind)
    seen = DigestSet(values=True)  # image member names (digests: flat memory), their first entry
    if "json members" not in stats.tables:
        stats.tables.append("json members")  # where `Captions.metadata` came from
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))  # caption members: pread
    apart = 0  # samples of caption members only: their images are elsewhere, or nowhere
    try:
        for key, sample in _samples(listed):
            if key is None:
                stats.found += 1  # named with the shard: in a folder, `source` is the folder
                problem = f"{sample[0][0].problem}: {path}"
                yield ManifestError(problem, source=source, line=stats.found)
                continue
            apart += _captions_alone(sample)
            yield from _sample_items(path, fd, sample, source, label, stats, seen)
    finally:
        os.close(fd)
    if apart:
        stats.notes.append(_apart_note(path, apart))
    if stats.found == 0 and not inside:
        yield no_images(source, stats.skipped)


def count_shard(
    path: Path,
    kind: ShardKind,
    *,
    at_least: int = 1,
    stats: WalkStats | None = None,
    label: str = "",
) -> int:
    """How many results `read_shard` yields, without reading a caption member (a shard
    without an image: `at_least`, its "no images found" as a manifest, none in a folder).

    One per image member and one per listing problem: samples need not be
    grouped to count them, and a zip's names are its central directory's.
    With `stats`, the members `read_shard` would skip are counted there too
    (keyed ``label#name``), so a run's note says what validate says; only
    then are names grouped into samples (one sample held at a time).
    """
    found = 0
    if stats is not None:
        return max(_count_skipping(path, kind, stats, label), at_least)
    for name in listed_names(str(path), kind):
        if name is None:
            found += 1
        else:
            split = _split(name)
            found += split is not None and _is_image(split[1])
    return max(found, at_least)


def _count_skipping(path: Path, kind: ShardKind, stats: WalkStats, label: str) -> int:
    """`count_shard`'s count, each member `_sample_items` skips counted in `stats`."""
    found = 0
    key: str | None = None
    run: list[tuple[str, str | None]] = []  # one sample's (name, suffix)
    for name in itertools.chain(listed_names(str(path), kind), (None,)):  # None: also the end
        split = _split(name) if name is not None else None
        this = split[0] if split else name
        if run and (name is None or this != key):
            images = sum(_is_image(suffix) for _name, suffix in run)
            found += images
            taken: set[str] = set()
            for member, suffix in run:
                if not _is_image(suffix):
                    why = _skipped_why(suffix, None, taken) if images else _NO_IMAGE
                    if why is not None:
                        stats.other_file(f"{label}#{member}", why)
            run = []
        if name is None:
            found += 1  # a listing problem (the last None is the loop's own end)
            continue
        key = this
        run.append((name, split[1] if split else None))
    return found - 1


_NO_IMAGE = "a member of a sample without an image"


def _captions_alone(sample: Sample) -> bool:
    """A sample with a caption member and no image: in a shard written unsorted (GNU tar's
    and zip's order is the folder's, not the names'), a caption lands apart from its image."""
    suffixes = [suffix for _entry, suffix in sample]
    return not any(map(_is_image, suffixes)) and any(
        suffix in _CAPTION_SUFFIXES for suffix in suffixes
    )


def _apart_note(path: Path, samples: int) -> str:
    members = "1 caption member has" if samples == 1 else f"{samples} caption members have"
    return (
        f"{path}: {members} no image next to {'it' if samples == 1 else 'them'} (a sample is a run of adjacent members, as "
        "WebDataset reads them): a shard written unsorted splits an image from its caption; "
        "write it sorted by name (tar --sort=name)"
    )


def _skipped_why(suffix: str | None, problem: str | None, taken: set[str]) -> str | None:
    """Why a sample's member that is no image is skipped; None for the sample's caption or
    json member (the first of each suffix, added to `taken`). The reader's rule and the
    count's."""
    if suffix is None or problem:
        return problem or "a member name without an extension"
    if suffix in (*_CAPTION_SUFFIXES, "json") and suffix not in taken:
        taken.add(suffix)
        return None
    return "not an image, caption or json member"


def _sample_items(
    path: Path,
    fd: int,
    sample: Sample,
    source: str,
    label: str,
    stats: WalkStats,
    seen: DigestSet,
) -> Iterator[Item | ManifestError]:
    images = [entry for entry, suffix in sample if _is_image(suffix)]
    others = [(entry, suffix) for entry, suffix in sample if not _is_image(suffix)]
    if not images:
        for entry, _suffix in others:
            name = entry.member.name if entry.member else ""
            stats.other_file(f"{label}#{name}", _NO_IMAGE)
        return
    caption, metadata, origin, problem = _text_of(path, fd, others, label, stats)
    # Counted as a folder's: from a caption member as from a caption file, from json as metadata.
    which = 2 if caption is None else 0 if origin and "(" not in origin else 1
    counts = stats.caption_counts
    for entry in images:
        member = entry.member
        assert member is not None
        stats.found += 1
        where = f"{path}#{member.name}"
        digest = digest64(member.name)
        first = seen.get(digest)
        if first is None:
            seen.add(digest, stats.found)
        else:  # a tar appended to, a zip written twice: one key, two bodies
            yield ManifestError(
                f"member name repeated in the shard (first as entry {first}): {where}",
                source=source,
                line=stats.found,
            )
            continue
        if entry.problem or problem:  # the image's problem, named by its key (as a folder's)
            reason = f"{entry.problem}: {where}" if entry.problem else str(problem)
            key = f"{label}#{member.name}"
            yield ManifestError(reason, source=source, line=stats.found, key=key)
            continue
        counts[which] += 1
        yield Item(
            key=f"{label}#{member.name}",
            path=path,
            line=stats.found,
            caption=caption,
            metadata=metadata,
            caption_from=origin,
            member=member,
        )


def _text_of(
    path: Path, fd: int, others: Sample, label: str, stats: WalkStats
) -> tuple[str | None, dict[str, Any] | None, str | None, str | None]:
    """(caption, metadata, the member it came from, a problem) of a sample's other members."""
    by_suffix: dict[str, Member] = {}
    taken: set[str] = set()
    for entry, suffix in others:
        member = entry.member
        if member is None:
            continue
        why = _skipped_why(suffix, entry.problem, taken)
        if why is not None:
            stats.other_file(f"{label}#{member.name}", why)
        elif suffix is not None:
            by_suffix[suffix] = member
    caption = origin = None
    metadata: dict[str, Any] | None = None
    for suffix in _CAPTION_SUFFIXES:
        member = by_suffix.get(suffix)
        if member is None:
            continue
        text, problem = _member_text(path, fd, member)
        if problem is not None:
            return None, None, None, problem
        caption, origin = (text.strip() or None), member.name
        break
    json_member = by_suffix.get("json")
    if json_member is not None:
        text, problem = _member_text(path, fd, json_member)
        if problem is not None:
            return None, None, None, problem
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return (
                None,
                None,
                None,
                f"json member is not valid JSON ({exc.msg}): {path}#{json_member.name}",
            )
        if not isinstance(value, dict):
            return None, None, None, f"json member is not a JSON object: {path}#{json_member.name}"
        for column in CAPTION_COLUMNS:
            found = value.get(column)
            if caption is None and isinstance(found, str) and found.strip():
                caption, origin = found.strip(), f"{json_member.name} ({column})"
                del value[column]
                break
        metadata = value or None
    if caption is None:
        origin = None
    return caption, metadata, origin, None


def _member_text(path: Path, fd: int, member: Member) -> tuple[str, str | None]:
    where = f"{path}#{member.name}"
    if member.length > MAX_CAPTION_BYTES:
        return (
            "",
            f"{os.path.splitext(member.name)[1]} member over {MAX_CAPTION_BYTES >> 10} KiB: {where}",
        )
    try:
        if member.stored:
            data = os.pread(fd, member.length, member.offset)
            if len(data) < member.length:
                raise OSError(f"member ended early: {len(data)} of {member.length} bytes: {where}")
        else:
            data = read_member(path, member, member.length)
    except OSError as exc:
        return "", f"cannot read member: {exc}"
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        kind = member.name.rsplit(".", 1)[-1]
        return (
            "",
            f"{kind} member {not_utf8(data, exc)}: {where}",
        )
