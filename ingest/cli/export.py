"""`ingest export JOURNAL`: each done item's remote id, as JSON lines, CSV, or the provider's shape.

Renders `ingest.journal.export`: rows follow the manifest's order and carry
its path and caption when the manifest (recorded in the journal header) is
still readable; otherwise they follow the journal. Exit 2 when the journal
cannot be read or the output cannot be written.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any, TextIO

CSV_COLUMNS = ("key", "path", "remote_id", "url", "caption")


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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import orjson

    from ingest.errors import IngestError
    from ingest.journal import export

    try:
        if args.format == "provider":
            document = export(args.journal, "provider")
        else:
            rows = export(args.journal)
        out: TextIO = args.output.open("w", newline="") if args.output else sys.stdout
    except IngestError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # only the output can fail here: the journal's errors are IngestErrors
        why = "its folder does not exist" if isinstance(exc, FileNotFoundError) else exc.strerror
        print(f"ingest: error: cannot write {args.output}: {why}", file=sys.stderr)
        return 2
    try:
        if args.format == "provider":
            out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        elif args.format == "csv":
            writer = csv.writer(out)
            writer.writerow(CSV_COLUMNS)
            for row in rows:
                writer.writerow([row.get(column, "") for column in CSV_COLUMNS])
        else:
            for row in rows:
                out.write(orjson.dumps(row).decode() + "\n")
    finally:
        if args.output:
            out.close()
    return 0
