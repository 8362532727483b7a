"""`ingest validate MANIFEST --provider P`: every local problem in one pass, no network.

Runs exactly the checks `ingest run` applies as it streams (manifest syntax,
duplicate ids, missing/unreadable/empty files, type sniffed from the bytes,
size and name limits of the provider), then prints a summary table (and,
for a folder, the files its walk skipped, where its captions came from:
caption files, metadata files, none, and the shards it read in place). With ``--each``, one line per entry
says what it becomes (kept with its type and caption source, or rejected
and why). Exit code 0 when everything would upload, 1 when anything would be
rejected, 2 when the manifest cannot be read or holds nothing to upload (an
empty file, a folder with no image: refused as a run refuses it). The captions
line counts the entries that upload: an entry's caption counts are taken as
its reading adds them, and those of an entry with a problem are left out.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.cli.options import add_settings_flags, settings_from_args

if TYPE_CHECKING:
    from ingest.item import Source
    from ingest.manifest import WalkStats
    from ingest.manifest.walkstats import Captions
    from ingest.sniff import ImageType


def register(sub: Any) -> None:
    from ingest.providers import PROVIDER_NAMES

    p = sub.add_parser(
        "validate",
        help="check a manifest and its files locally (no network)",
        description=(
            "Report every local problem of MANIFEST for PROVIDER in one pass, without any network: "
            "bad lines, duplicate ids, missing, unreadable or empty files, types sniffed from the "
            "bytes, size and name limits. Exit code 0 if all is well, 1 if anything would be "
            "rejected, 2 if it cannot be checked: a bad flag or setting, a manifest that cannot "
            "be read or holds nothing to upload, an s3:// source without boto3."
        ),
    )
    p.add_argument("manifest", type=Path)
    p.add_argument("--provider", required=True, choices=PROVIDER_NAMES)
    p.add_argument("--format", choices=("jsonl", "csv", "list", "folder", "tar", "zip", "parquet"))
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.add_argument("--limit", type=int, default=200, help="problems listed in full (default 200)")
    p.add_argument(
        "--each",
        action="store_true",
        help="one line per entry: kept (type, size, where its caption comes from) or why not",
    )
    add_settings_flags(p)
    p.set_defaults(func=run)


# How a run counts an image its conversion fails (a failed item, not a rejected one), and
# how `ingest status --failed` names it: validate predicts it from the image's header.
CONVERT_FAILED = "fail_item/convert_failed"


def category(reason: str) -> str:
    """The table row of a rejection reason: its cause without paths (`ingest.reasons.group`)."""
    from ingest.reasons import group

    return group(reason)


def becomes(source: Source, into: ImageType | None = None) -> str:
    """What one checked entry becomes: "kept: png, 12.0 KiB, caption from a.txt".

    `into`: the type `--convert` makes of it ("converted from heic to jpeg, 3.1 MiB before
    conversion (size after conversion unknown until converted), ..."); a source converted
    already shows the converted size, and the original's.
    """
    from ingest.cli.wording import human_bytes

    item = source.item
    if item.caption is None:
        caption = "no caption"
    else:
        caption = f"caption from {item.caption_from or 'the manifest'}"
    if item.url is not None:  # type and size are known once it is fetched (`ingest.remote`)
        return f"fetched at upload: {item.where}, {caption}"
    size = human_bytes(source.size)
    if source.converted is not None:  # converted already: `size` is the converted bytes'
        kept = f"converted from {source.converted.original.ext} to {source.image_type.ext}"
        return f"{kept}, {size} (from {human_bytes(source.converted.size)}), {caption}"
    if into is not None:  # `validate` reads the header only: the result's size is not known
        kept = f"converted from {source.image_type.ext} to {into.ext}"
        unknown = "size after conversion unknown until converted"
        return f"{kept}, {size} before conversion ({unknown}), {caption}"
    return f"kept: {source.image_type.ext}, {size}, {caption}"


def _say_skipped(rel: str, why: str) -> None:
    print(f"{rel}: skipped: {why}")


def kept_captions(walk: WalkStats, dropped: list[int]) -> Captions:
    """The walk's caption counts without the entries that will not upload (`dropped`: what
    their reading added to `WalkStats.caption_counts`' first four fields)."""
    c = walk.captions
    sidecar, metadata, none, both = (
        n - d for n, d in zip(walk.caption_counts[:4], dropped, strict=True)
    )
    return replace(c, sidecar=sidecar, metadata=metadata, none=none, both=both)


def _captions(c: Captions) -> dict[str, Any]:
    return {
        "from_caption_files": c.sidecar,
        "from_metadata": c.metadata,
        "without": c.none,
        "both_caption_file_used": c.both,
        "metadata_rows_unused": c.rows_unused,
        "metadata_files": list(c.files),
    }


def run(args: argparse.Namespace) -> int:
    import orjson

    from ingest.cli.wording import folder_reason, human_bytes, plural, problem_where
    from ingest.cli.wording import packed as of_a_shard
    from ingest.convert import accepting, converter_for
    from ingest.errors import IngestError, ManifestError
    from ingest.item import Source
    from ingest.manifest import WalkStats, read_manifest
    from ingest.manifest.packed.infolder import packed_counts
    from ingest.manifest.probe import refuse_stream
    from ingest.manifest.reader import refuse_empty
    from ingest.providers import provider_class
    from ingest.validate import Checker

    try:
        settings = settings_from_args(args, args.provider)
        cls = provider_class(args.provider)
        caps = cls.capabilities(settings.provider(args.provider))
        converter = converter_for(caps, args.provider, settings.run)  # --convert
        checker = Checker(accepting(caps) if converter else caps, args.provider)
        walk = WalkStats(_say_skipped if args.each and not args.json else None)
        refuse_stream(args.manifest)  # as a run: `/dev/stdin < m.jsonl` reads m.jsonl
        manifest = args.manifest.resolve()  # its format and its relative paths are m.jsonl's
        refuse_empty(manifest, args.format)  # nothing to upload: refused, as by a run
        entries = read_manifest(manifest, args.format, walk=walk)
    except IngestError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2
    problems: list[dict[str, Any]] = []
    by_reason: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    by_converted: Counter[str] = Counter()  # --convert: the original types converted
    ok = total_bytes = entries_seen = 0
    s3_checked = False  # boto3 can be imported, an s3:// source found
    # Caption counts an entry's reading added (the walk counts as it reads, ahead of the
    # checks): those of an entry that will not upload are taken out of the captions line.
    counted, dropped = [0, 0, 0, 0], [0, 0, 0, 0]
    for entry in entries:
        entries_seen += 1
        added = [n - c for n, c in zip(walk.caption_counts[:4], counted, strict=True)]
        counted = walk.caption_counts[:4]
        key: str | None = entry.key  # a reader's problem may name its entry too
        if not isinstance(entry, ManifestError):
            if entry.url is not None and not s3_checked:  # s3:// without boto3: as by a run
                from ingest.remote import is_s3, require_boto3

                try:
                    require_boto3(entry.url)
                except IngestError as exc:
                    print(f"ingest: error: {exc}", file=sys.stderr)
                    return 2
                s3_checked = is_s3(entry.url)
            result: Source | ManifestError = checker(entry)
        else:
            result = entry
        into: ImageType | None = None
        fails = False  # a problem the run fails at upload (`CONVERT_FAILED`), not a rejection
        if isinstance(result, Source) and converter is not None and converter.needs(result):
            planned = converter.plan(result)  # its header read: what it becomes, or why not
            if isinstance(planned, str):  # the run fails it at its conversion: said as it will
                result = ManifestError(planned, source=str(result.item.path), line=result.item.line)
                fails = True
            else:
                into = planned
                by_converted[result.image_type.ext] += 1
        if isinstance(result, Source):
            ok += 1
            total_bytes += result.size
            by_type["url" if result.item.url is not None else result.image_type.ext] += 1
            if args.each and not args.json:
                print(f"{result.item.key}: {becomes(result, into)}")
            continue
        dropped = [d + a for d, a in zip(dropped, added, strict=True)]
        if args.each and not args.json:
            # A folder's problem of no entry (a metadata row) names the folder, not its walk place.
            # A manifest's (or shard's) problem of no key is its line, as the table without
            # --each says it: `line 3: rejected: invalid JSON …`, not `3: rejected: …`.
            line = None if args.manifest.is_dir() or result.line is None else result.line
            where = key or (args.manifest if line is None else f"line {line}")
            print(f"{where}: {CONVERT_FAILED if fails else 'rejected'}: {result.reason}")
        by_reason[f"{CONVERT_FAILED}: " * fails + category(result.reason)] += 1
        problem: dict[str, Any] = {"line": result.line, "key": key, "reason": result.reason}
        problem["class"] = "fail" if fails else "bad"  # as `ingest status --failed --json`
        if fails:
            problem |= {"action": "fail_item", "code": "convert_failed"}
        problems.append(problem)
    captions = kept_captions(walk, dropped)
    if args.json:
        document = {
            "manifest": str(args.manifest),
            "provider": args.provider,
            "entries": entries_seen,
            "ok": ok,
            "bytes": total_bytes,
            "types": dict(by_type),
            "converted": dict(by_converted),
            "problems": problems,
            "by_reason": dict(by_reason.most_common()),
            "valid": not problems,
            "skipped": {
                "files": walk.files,
                "loops": walk.loops,
                "metadata_rows_repeated": walk.repeats,
            },
            "captions": _captions(captions),
            "packed": packed_counts(walk),
            "notes": walk.notes,
        }
        sys.stdout.write(orjson.dumps(document).decode() + "\n")
        return 1 if problems else 0
    folder = args.manifest.is_dir()
    shard = of_a_shard(args.manifest, args.format)
    for problem in [] if args.each else problems[: args.limit]:  # --each said them in place
        key, reason = problem["key"], problem["reason"]
        where = problem_where(
            problem["line"], key, reason, str(args.manifest), folder=folder, packed=shard
        )
        said = folder_reason(reason, key) if folder or shard else reason
        print(f"{where}: {CONVERT_FAILED + ': ' if problem['class'] == 'fail' else ''}{said}")
    if len(problems) > args.limit and not args.each:
        print(f"… and {len(problems) - args.limit} more (use --json for all)")
    skipped = walk.skipped
    if skipped and walk.found:  # with nothing found, "no images found" says it
        print(f"{args.manifest}: skipped {skipped.describe()}")
    if captions:  # of the entries that upload: a rejected entry's caption is not counted
        left_out = sum(dropped[:3])  # each image is counted once: caption file, metadata, none
        tail = f" (not counted: {plural(left_out, 'entry')} with a problem)" if left_out else ""
        print(f"{args.manifest}: {captions.describe()}{tail}")
    packed = packed_counts(walk)
    if folder and packed:  # a folder's shards, read in place (their members keyed shard#member)
        kinds = ", ".join(f"{n} {kind}" for kind, n in packed.items())
        print(f"{args.manifest}: read {plural(sum(packed.values()), 'packed file')} ({kinds})")
    for note in walk.notes:  # what a reader saw (a Parquet file's large pages)
        print(note)
    if by_converted:
        converted = ", ".join(f"{n} from {t}" for t, n in by_converted.most_common())
        print(f"{args.manifest}: --convert converts {converted} (to PNG with alpha, else JPEG)")
    types = ", ".join(f"{n} {t}" for t, n in by_type.most_common()) or "none"
    if (
        problems or skipped or captions or by_converted or packed or walk.notes
    ):  # a blank line between the lines above and the summary
        print()
    print(
        f"{args.manifest}: {plural(entries_seen, 'entry')} for {args.provider}: {ok} ok "
        f"({human_bytes(total_bytes)}; {types}), {plural(len(problems), 'problem')}"
    )
    if by_reason:
        width = max(len(r) for r in by_reason)
        print(f"  {'problem'.ljust(width)}  count")
        for reason, n in by_reason.most_common():
            print(f"  {reason.ljust(width)}  {n:>5}")
    return 1 if problems else 0
