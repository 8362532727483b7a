"""`ingest export JOURNAL`: each done item's remote id, as JSON lines, CSV, or the provider's shape.

Renders `ingest.journal.export`: rows follow the manifest's order and carry
its path and caption. ``--format provider`` writes one JSON document a line:
the body fragment of one provider call each (Novita: one training task's
``image_dataset_items``, at most 50, ``--training subject|style``), so a shell
loop posts one task a line, and a dataset that fits one task is one line,
itself a JSON file. Done items no valid document can hold (style training
without a caption) are listed on stderr, one line each, and nothing is
written: exit 1. Items uploaded earlier that the manifest (recorded in
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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from ingest.cli import coordinated

CSV_COLUMNS = ("key", "path", "remote_id", "url", "caption")
REMOVED_COLUMN = "removed"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="list remote ids of uploaded items",
        description=(
            "Write one row per uploaded item: key, path, remote id, final URL and caption where known. "
            "--format provider writes the documents the provider's next API calls want, one "
            "JSON document a line (novita: image_dataset_items of at most 50 images a "
            "training task)."
        ),
    )
    p.add_argument("journal", type=Path, nargs="?")
    p.add_argument("--format", choices=("jsonl", "csv", "provider"), default="jsonl")
    p.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    p.add_argument(
        "--training",
        choices=("subject", "style"),
        help="novita, --format provider: the training task the documents are for (default "
        "subject; style needs every caption, 1-1024 characters)",
    )
    p.add_argument(
        "--include-removed",
        action="store_true",
        help="also list items uploaded earlier that the manifest no longer has",
    )
    coordinated.add_reader_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import orjson

    from ingest.errors import ExportError, IngestError
    from ingest.journal import export, manifest_problem

    removed = args.include_removed
    try:
        if coordinated.reads_coordinator(args):
            return coordinated.export(args)  # a run shared through Redis (ingest.coord)
        if args.format == "provider":
            documents = export(
                args.journal, "provider", include_removed=removed, training=args.training
            )
        elif args.training is not None:
            print("ingest: error: --training goes with --format provider", file=sys.stderr)
            return 2
        else:
            rows = export(args.journal, include_removed=removed)
        problem = manifest_problem(args.journal)
        out: TextIO = args.output.open("w", newline="") if args.output else sys.stdout
    except ExportError as exc:
        for line in exc.problems:
            print(f"ingest: problem: {line}", file=sys.stderr)
        print(
            f"ingest: error: {exc}; nothing was written. Fix what each problem names (captions "
            "are read from the manifest: nothing needs uploading again) and export again",
            file=sys.stderr,
        )
        return 1
    except IngestError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise  # the reader went away (`| head`, a coordinated export's rows): main's exit
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
            for document in documents:
                out.write(orjson.dumps(document).decode() + "\n")
        else:
            columns = (*CSV_COLUMNS, REMOVED_COLUMN) if removed else CSV_COLUMNS
            write_rows(out, args.format, rows, columns)
    finally:
        if args.output:
            out.close()
    return 0


def write_rows(
    out: TextIO, fmt: str, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]
) -> None:
    """Rows as CSV (a header of `columns`, then one line each) or as JSON lines."""
    import orjson

    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(column, "") for column in columns])
    else:
        for row in rows:
            out.write(orjson.dumps(dict(row)).decode() + "\n")


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
