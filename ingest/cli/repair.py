"""`ingest repair JOURNAL`: keep every intact record of a damaged journal.

A journal damaged before its last line (a disk error, an editor, a bad copy)
stops `ingest run` with the line number. This command rewrites it with every
record that is still whole, after copying the original aside; the items whose
records were lost are redone by the next run of the same command.

Exit codes: 0 repaired (or nothing to repair); 2 the journal cannot be
repaired (no such file, damaged header, in use by a run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "repair",
        help="keep every intact record of a damaged journal",
        description=(
            "Rewrite JOURNAL keeping every intact record and dropping damaged lines. "
            "The original is saved as JOURNAL.damaged first. Run the same `ingest run` "
            "command afterwards: items whose records were lost are redone."
        ),
        epilog="exit codes: 0 repaired or nothing to repair, 2 cannot repair",
    )
    p.add_argument("journal", type=Path)
    p.add_argument(
        "--dry-run", action="store_true", help="only report what would be dropped; change nothing"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import orjson

    from ingest.cli.wording import plural
    from ingest.errors import JournalError
    from ingest.journal import repair

    path: Path = args.journal
    try:
        result = repair(path, dry_run=args.dry_run)
    except JournalError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ingest: error: cannot repair {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.json:
        info = {
            "journal": str(path),
            "kept": result.kept,
            "dropped": [{"line": line, "reason": why} for line, why in result.dropped],
            "backup": None if result.backup is None else str(result.backup),
            "dry_run": bool(args.dry_run),
        }
        sys.stdout.write(orjson.dumps(info).decode() + "\n")
        return 0
    if not result.dropped:
        print(f"{path}: nothing to repair ({plural(result.kept, 'record')}, all intact)")
        return 0
    for line, why in result.dropped:
        print(f"{path}:{line}: {why}: {'would be dropped' if args.dry_run else 'dropped'}")
    if args.dry_run:
        print(
            f"{path}: would keep {plural(result.kept, 'record')} and drop {plural(len(result.dropped), 'line')}"
        )
        return 0
    print(
        f"{path}: kept {plural(result.kept, 'record')}, "
        f"dropped {plural(len(result.dropped), 'damaged line')}; "
        f"the original is saved as {result.backup}. Run the same `ingest run` command to resume."
    )
    return 0
