"""`ingest status JOURNAL`: what a journal says, counted from its records.

Renders `ingest.journal.status`; exit 2 when the journal cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="show what a journal records",
        description="Count the items of a run by state, from its journal (safe while the run goes on).",
    )
    p.add_argument("journal", type=Path)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import orjson

    from ingest.errors import JournalError
    from ingest.journal import status

    try:
        info = status(args.journal)
    except JournalError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(orjson.dumps(info.to_json()).decode() + "\n")
        return 0
    total = "?" if info.total is None else info.total
    print(f"journal   {info.journal}")
    print(f"provider  {info.provider}")
    print(f"manifest  {info.manifest}  ({total} entries)")
    print(f"runs      {info.runs}")
    print(f"done      {info.done}")
    print(f"failed    {info.failed}")
    print(f"rejected  {info.rejected}")
    print(f"unfinished {info.in_flight}")
    for reason, n in info.problems.items():
        print(f"  {n:>6}  {reason}")
    print(
        "complete" if info.complete else "incomplete: run the same `ingest run` command to resume"
    )
    return 0
