"""`ingest export JOURNAL`: each done item's remote id, as JSON lines, CSV, or the provider's shape.

Renders `ingest.journal.export`: rows follow the manifest's order and carry
its path and caption. Items uploaded earlier that the manifest (recorded in
the journal header) no longer lists are left out, from the rows and from
``--format provider`` alike, unless ``--include-removed`` (then they follow,
flagged ``"removed": "true"``). When the manifest cannot be read, every done
item is listed in journal order, with a warning on stderr; when some of its
entries are not done, a warning on stderr says how many ("exporting 1 of 7
items; 6 are not done"), and the export still exits 0: it wrote what was
asked. Exit 2 when the journal cannot be read or the output cannot be written.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any, TextIO

CSV_COLUMNS = ("key", "path", "remote_id", "url", "caption")
REMOVED_COLUMN = "removed"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="list remote ids of uploaded items",
        description=(
            "Write one row per uploaded item: key, path, remote id, final URL and caption where known. "
            "--format provider writes the document the provider's next API call wants "
            "(novita: image_dataset_items)."
        ),
    )
    p.add_argument("journal", type=Path)
    p.add_argument("--format", choices=("jsonl", "csv", "provider"), default="jsonl")
    p.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    p.add_argument(
        "--include-removed",
        action="store_true",
        help="also list items uploaded earlier that the manifest no longer has",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import orjson

    from ingest.errors import IngestError
    from ingest.journal import export, manifest_problem

    removed = args.include_removed
    try:
        if args.format == "provider":
            document = export(args.journal, "provider", include_removed=removed)
        else:
            rows = export(args.journal, include_removed=removed)
        problem = manifest_problem(args.journal)
        out: TextIO = args.output.open("w", newline="") if args.output else sys.stdout
    except IngestError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # only the output can fail here: the journal's errors are IngestErrors
        why = "its folder does not exist" if isinstance(exc, FileNotFoundError) else exc.strerror
        print(f"ingest: error: cannot write {args.output}: {why}", file=sys.stderr)
        return 2
    if problem is not None:
        print(
            f"ingest: warning: the manifest cannot be read ({problem}), so items removed "
            "from it cannot be told apart: every uploaded item is listed",
            file=sys.stderr,
        )
    elif (partial := _not_done(args.journal)) is not None:
        print(f"ingest: warning: {partial}", file=sys.stderr)
    if (emulated := _emulated(args.journal)) is not None:
        print(f"ingest: warning: {emulated}", file=sys.stderr)
    try:
        if args.format == "provider":
            out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        elif args.format == "csv":
            writer = csv.writer(out)
            columns = (*CSV_COLUMNS, REMOVED_COLUMN) if removed else CSV_COLUMNS
            writer.writerow(columns)
            for row in rows:
                writer.writerow([row.get(column, "") for column in columns])
        else:
            for row in rows:
                out.write(orjson.dumps(row).decode() + "\n")
    finally:
        if args.output:
            out.close()
    return 0


def _not_done(journal: Path) -> str | None:
    """ "exporting 1 of 7 items; 6 are not done" when the manifest is not all done, else None.

    The export still succeeds (exit 0: it wrote what was asked); the warning
    keeps a partial dataset from passing for a whole one.
    """
    from ingest.journal import status
    from ingest.journal.report import plural

    counts = status(journal)
    if counts.total is None or counts.done >= counts.total:
        return None
    missing = counts.total - counts.done
    return (
        f"exporting {counts.done} of {plural(counts.total, 'item')}; "
        f"{missing} {'is' if missing == 1 else 'are'} not done (see ingest status {journal})"
    )


def _emulated(journal: Path) -> str | None:
    """A warning when `journal` was made against the built-in emulator (its ids are no real ones)."""
    from ingest.journal import EMULATOR, peek_header

    header = peek_header(journal)
    if header is None or header.endpoint != EMULATOR:
        return None
    return (
        f"{journal} was made against the built-in emulator (--sim): these ids exist only "
        f"there, not at {header.provider}"
    )
