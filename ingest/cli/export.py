"""`ingest export JOURNAL`: each done item's remote id, as JSON lines, CSV, or the provider's shape.

Rows follow the manifest's order and carry its path and caption when the
manifest (recorded in the journal header) is still readable; otherwise they
follow the journal.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


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


def done_records(path: Path) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The journal header and the last done record of each key still done."""
    import orjson

    from ingest.journal import replay

    state = replay(path)  # validates the whole journal first
    out: dict[str, dict[str, Any]] = {}
    with path.open("rb") as fh:
        next(fh, None)
        for line in fh:
            if not line.endswith(b"\n"):
                break
            rec = orjson.loads(line)
            key = rec.get("k")
            if rec.get("s") == "done" and isinstance(key, str) and state.is_done(key):
                out[key] = rec
    return state.header, out


def rows(header: Any, records: dict[str, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Export rows in manifest order (journal order for keys the manifest no longer has)."""
    from ingest.errors import ManifestError
    from ingest.item import Item
    from ingest.manifest import read_manifest

    def row(key: str, rec: dict[str, Any], item: Item | None) -> dict[str, Any]:
        out: dict[str, Any] = {"key": key}
        if item is not None:
            out["path"] = str(item.path)
        out["remote_id"] = rec.get("r")
        if rec.get("u"):
            out["url"] = rec["u"]
        if item is not None and item.caption:
            out["caption"] = item.caption
        out.update(rec.get("x") or {})
        return out

    pending = dict(records)
    try:
        for entry in read_manifest(Path(header.manifest)):
            if isinstance(entry, Item) and entry.key in pending:
                yield row(entry.key, pending.pop(entry.key), entry)
    except ManifestError:
        pass  # the manifest moved or changed: the journal alone still names every item
    for key, rec in pending.items():
        yield row(key, rec, None)


def run(args: argparse.Namespace) -> int:
    import orjson

    from ingest.errors import IngestError
    from ingest.providers import provider_class

    try:
        header, records = done_records(args.journal)
    except FileNotFoundError:
        print(f"ingest: error: no journal at {args.journal}", file=sys.stderr)
        return 2
    except IngestError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2
    out = args.output.open("w", newline="") if args.output else sys.stdout
    try:
        if args.format == "provider":
            cls = provider_class(header.provider)
            document = cls.export_document(list(rows(header, records)), header.bind)
            out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        elif args.format == "csv":
            writer = csv.writer(out)
            writer.writerow(["key", "path", "remote_id", "url", "caption"])
            for r in rows(header, records):
                writer.writerow(
                    [
                        r["key"],
                        r.get("path", ""),
                        r["remote_id"],
                        r.get("url", ""),
                        r.get("caption", ""),
                    ]
                )
        else:
            for r in rows(header, records):
                out.write(orjson.dumps(r).decode() + "\n")
    finally:
        if args.output:
            out.close()
    return 0
