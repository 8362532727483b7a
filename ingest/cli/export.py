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

A shared run (`--coordinator URL --run-name NAME` instead of JOURNAL) goes
the same way from `Exported` on: its rows come from the coordinator's record
and the current manifest (`ingest.coord.exporting`: the run's manifest, or
`--manifest PATH`, checked against the run's binding), its documents from
the same `documents`; exit 3 when the coordinator cannot be reached.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ingest.cli import shared_run

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
    shared_run.add_reader_flags(p)
    shared_run.add_manifest_flag(p, "the run's manifest here, for paths and captions")
    p.set_defaults(func=run)


@dataclass(frozen=True, slots=True)
class Exported:
    """What one export writes: rows (or the provider's documents), and the warnings first."""

    items: Iterable[Mapping[str, object]]
    warnings: tuple[str, ...] = ()


def run(args: argparse.Namespace) -> int:
    """A journal's export, or a shared run's (`--coordinator`): one path from here on."""
    import orjson

    from ingest.coord.connection import CoordinatorError
    from ingest.errors import ExportError, IngestError

    if args.training is not None and args.format != "provider":
        print("ingest: error: --training goes with --format provider", file=sys.stderr)
        return 2
    try:
        if shared_run.reads_coordinator(args):
            exported = _of_shared_run(args)  # a run shared through Redis (ingest.coord)
        else:
            if args.shared_manifest is not None:
                print("ingest: error: --manifest goes with --coordinator", file=sys.stderr)
                return 2
            exported = _of_journal(args)
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
    except CoordinatorError as exc:  # down, or refusing: not the user's input (run's exit 3)
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 3
    except IngestError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise  # the reader went away (`| head`): main's exit
    except OSError as exc:  # only the output can fail here: the journal's errors are IngestErrors
        why = "its folder does not exist" if isinstance(exc, FileNotFoundError) else exc.strerror
        print(f"ingest: error: cannot write {args.output}: {why}", file=sys.stderr)
        return 2
    for warning in exported.warnings:
        print(f"ingest: warning: {warning}", file=sys.stderr)
    try:
        if args.format == "provider":
            for document in exported.items:
                out.write(orjson.dumps(document).decode() + "\n")
        else:
            columns = (*CSV_COLUMNS, REMOVED_COLUMN) if args.include_removed else CSV_COLUMNS
            write_rows(out, args.format, exported.items, columns)
    finally:
        if args.output:
            out.close()
    return 0


def _of_journal(args: argparse.Namespace) -> Exported:
    from ingest.journal import export, manifest_problem

    journal, removed = args.journal, args.include_removed
    items: Iterable[Mapping[str, object]]
    if args.format == "provider":
        items = export(journal, "provider", include_removed=removed, training=args.training)
    else:
        items = export(journal, include_removed=removed)
    warnings = []
    if (problem := manifest_problem(journal)) is not None:
        warnings.append(
            f"the manifest cannot be read ({problem}), so items removed from it cannot be "
            "told apart: every uploaded item is listed"
        )
    elif (partial := _not_done(journal)) is not None:
        warnings.append(partial)
    if (emulated := _emulated(journal)) is not None:
        warnings.append(emulated)
    return Exported(items, tuple(warnings))


def _of_shared_run(args: argparse.Namespace) -> Exported:
    """The shared run's done items, from its record and the current manifest (`coord.exporting`)."""
    import anyio

    from ingest.cli.wording import plural
    from ingest.coord import exporting
    from ingest.coord.connection import describe
    from ingest.journal.exporting import documents

    run = anyio.run(shared_run.shared_run, args.coordinator, args.run_name)
    manifest: Path | None = args.shared_manifest or run.source
    if manifest is None:
        problem: str | None = "the run does not record where its manifest is"
    else:
        problem = exporting.check(run, manifest)  # ManifestMismatch: another manifest
    rows = exporting.rows(run, None if problem else manifest, args.include_removed)
    items: Iterable[Mapping[str, object]] = rows
    if args.format == "provider":
        items = documents(rows, run.provider, run.bind, args.training)
    warnings = []
    if problem is not None:
        warnings.append(
            f"the manifest cannot be read ({problem}): every done item is listed, in line "
            "order, without its path and caption (--manifest PATH: the run's manifest here)"
        )
    elif len(run.done) < run.entries:
        missing = run.entries - len(run.done)
        warnings.append(
            f"exporting {len(run.done)} of {plural(run.entries, 'item')}; {missing} "
            f"{'is' if missing == 1 else 'are'} not done (see ingest status --coordinator "
            f"{describe(args.coordinator)} --run-name {run.name})"
        )
    return Exported(items, tuple(warnings))


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

    Or, all done, that files the latest run found changed are exported as their earlier upload.

    The export still succeeds (exit 0: it wrote what was asked); the warning
    keeps a partial dataset from passing for a whole one.
    """
    from ingest.journal import status
    from ingest.journal.report import plural

    counts = status(journal)
    if counts.changed and counts.total is not None and counts.done >= counts.total:
        return (
            f"{plural(counts.changed, 'file')} changed since upload, as the latest run found: "
            f"{'its row is its' if counts.changed == 1 else 'their rows are their'} earlier "
            "upload (`ingest run --reupload-changed` uploads the new content)"
        )
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
