"""`ingest export JOURNAL`: each done item's remote id, as JSON lines or CSV."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="list remote ids of uploaded items",
        description="Write one record per uploaded item: its key, remote id and final URL if any.",
    )
    p.add_argument("journal", type=Path)
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    p.set_defaults(func=run)


def done_records(path: Path) -> dict[str, dict[str, Any]]:
    """The last done record of each key, in journal order."""
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
            if rec.get("s") == "done" and isinstance(key, str):
                out.pop(key, None)
                out[key] = rec
            elif isinstance(key, str) and key in out and not state.is_done(key):
                out.pop(key)
    return out


def run(args: argparse.Namespace) -> int:
    import orjson

    from ingest.errors import JournalError

    try:
        records = done_records(args.journal)
    except FileNotFoundError:
        print(f"ingest: error: no journal at {args.journal}", file=sys.stderr)
        return 2
    except JournalError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2
    out = args.output.open("w", newline="") if args.output else sys.stdout
    try:
        if args.format == "csv":
            writer = csv.writer(out)
            writer.writerow(["key", "remote_id", "url"])
            for key, rec in records.items():
                writer.writerow([key, rec.get("r", ""), rec.get("u", "")])
        else:
            for key, rec in records.items():
                row: dict[str, Any] = {"key": key, "remote_id": rec.get("r")}
                if rec.get("u"):
                    row["url"] = rec["u"]
                if rec.get("x"):
                    row.update(rec["x"])
                out.write(orjson.dumps(row).decode() + "\n")
    finally:
        if args.output:
            out.close()
    return 0
