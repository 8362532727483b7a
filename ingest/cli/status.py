"""`ingest status JOURNAL`: what a journal says, counted from its records."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
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


def summarize(path: Path) -> dict[str, Any]:
    """The journal's state as a JSON-ready dict."""
    from ingest.journal import replay

    state = replay(path)
    counts = state.counts()
    reasons: Counter[str] = Counter()
    for rec in state.pending.values():
        if rec.get("s") in ("fail", "bad"):
            reasons[f"{rec.get('a', 'rejected')}/{rec.get('c') or str(rec.get('e', ''))[:60]}"] += 1
    total = state.total
    return {
        "journal": str(path),
        "provider": state.header.provider,
        "manifest": state.header.manifest,
        "runs": state.runs,
        "total": total,
        **counts,
        "complete": total is not None and counts["done"] == total,
        "torn_tail": state.torn_tail,
        "problems": dict(reasons.most_common()),
    }


def run(args: argparse.Namespace) -> int:
    import orjson

    from ingest.errors import JournalError

    try:
        info = summarize(args.journal)
    except FileNotFoundError:
        print(f"ingest: error: no journal at {args.journal}", file=sys.stderr)
        return 2
    except JournalError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(orjson.dumps(info).decode() + "\n")
        return 0
    total = info["total"]
    print(f"journal   {info['journal']}")
    print(f"provider  {info['provider']}")
    print(f"manifest  {info['manifest']}  ({'?' if total is None else total} entries)")
    print(f"runs      {info['runs']}")
    print(f"done      {info['done']}")
    print(f"failed    {info['failed']}")
    print(f"rejected  {info['rejected']}")
    print(f"unfinished {info['in_flight']}")
    for reason, n in info["problems"].items():
        print(f"  {n:>6}  {reason}")
    print(
        "complete"
        if info["complete"]
        else "incomplete: run the same `ingest run` command to resume"
    )
    return 0
