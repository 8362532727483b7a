"""`ingest status JOURNAL`: what a journal says about the manifest's items, and what would help.

Renders `ingest.journal.status` (counts against the manifest as it is now,
items removed from it reported apart, then the next steps that would get the
rest done), or with ``--failed`` `ingest.journal.failures`: every failed and
rejected item, one a line (JSON lines with ``--json``), so nothing is lost
past the run's first 50 printed problems. Exit 2 when the journal cannot be
read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.cli import coordinated

if TYPE_CHECKING:
    from ingest.journal.report import Failure, JournalStatus


def register(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="show what a journal records",
        description=(
            "Count the manifest's items by state, from the journal (safe while the run goes on), "
            "and say what would get the rest done. --failed lists every failed and rejected item."
        ),
    )
    p.add_argument("journal", type=Path, nargs="?")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--failed",
        action="store_true",
        help="list each failed and rejected item: key, line, class, code, reason (--json: JSON lines)",
    )
    coordinated.add_reader_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import orjson

    from ingest.coord.connection import CoordinatorError
    from ingest.errors import ConfigError, JournalError
    from ingest.journal import failures, status

    try:
        if coordinated.reads_coordinator(args):
            return coordinated.status(args)  # a run shared through Redis (ingest.coord)
        if args.failed:
            found = failures(args.journal)
        else:
            info = status(args.journal)
    except (JournalError, ConfigError, CoordinatorError) as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2
    if args.failed:
        if args.json:
            for failure in found:
                sys.stdout.write(orjson.dumps(failure.to_json()).decode() + "\n")
        else:
            listed = 0
            folder, packed = _naming(args.journal)
            for failure in found:
                print(failure_line(failure, folder=folder, packed=packed))
                listed += 1
            if not listed:
                print("no failed or rejected items")
        return 0
    if args.json:
        sys.stdout.write(orjson.dumps(info.to_json()).decode() + "\n")
        return 0
    for line in status_lines(info):
        print(line)
    return 0


def failure_line(failure: Failure, *, folder: bool = False, packed: bool = False) -> str:
    """One item of ``status --failed``: where, key, class/code, reason."""
    from ingest.cli.wording import folder_reason, problem_where

    key, reason = failure.key, failure.reason
    where = problem_where(failure.line, key, reason, "(no line)", folder=folder, packed=packed)
    label = f"{failure.action}/{failure.code}" if failure.kind == "fail" else "rejected"
    return f"{where}: {label}: {folder_reason(reason, key) if folder or packed else reason}"


def _naming(journal: Path) -> tuple[bool, bool]:
    """Whether the journal's manifest is a folder (its entries are then named by path), and
    whether a shard or Parquet file (by member or row: `wording.member_where`)."""
    from ingest.cli.wording import packed
    from ingest.errors import JournalError
    from ingest.journal.reader import peek_header

    try:
        header = peek_header(journal)
    except JournalError:
        return False, False
    if header is None:
        return False, False
    manifest = Path(header.manifest)
    return manifest.is_dir(), packed(manifest)


def status_lines(info: JournalStatus) -> list[str]:
    from ingest.cli.wording import plural
    from ingest.journal.maintenance import describe_endpoint
    from ingest.journal.report import removed_note

    # An interrupted first run never read the manifest to its end: no count, not "(? entries)".
    total = "not counted yet" if info.total is None else plural(info.total, "entry")
    endpoint = describe_endpoint(info.endpoint) if info.endpoint else "not recorded (older journal)"
    out = [
        f"journal   {info.journal}",
        f"provider  {info.provider}",
        f"endpoint  {endpoint}",
        f"manifest  {info.manifest}  ({total})",
        f"runs      {info.runs}",
        f"done      {info.done}",
        f"failed    {info.failed}",
        f"rejected  {info.rejected}",
        f"unfinished {info.in_flight}",
    ]
    if info.not_started:
        out.append(f"not started {info.not_started}")
    out.extend(f"  {n:>6}  {reason}" for reason, n in info.problems.items())
    if info.removed:
        out.append(removed_note(info.removed))
    steps = info.next_steps()
    if info.complete:
        out.extend(steps)
        out.append("complete")
    elif len(steps) == 1:
        out.append(f"incomplete: {steps[0]}")
    else:
        out.append("incomplete:")
        out.extend(f"  {step}" for step in steps)
    return out
