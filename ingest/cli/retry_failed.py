"""`ingest retry-failed JOURNAL`: re-queue the items a run could not upload.

Reads the provider and manifest from the journal's header and runs them
again with `--retry-failed`: items the provider rejected, items whose
retries ran out, and (with `--reupload-changed`) items whose file changed
since they were uploaded. Takes the same flags as `ingest run`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ingest.cli.run import EXIT_CODES, add_run_flags


def register(sub: Any) -> None:
    p = sub.add_parser(
        "retry-failed",
        help="upload again the items a run could not upload",
        description=(
            "Resume the run recorded in JOURNAL and retry its failed items too (after you fixed "
            "the cause). Same as `ingest run MANIFEST --provider P --journal JOURNAL --retry-failed`."
        ),
        epilog=EXIT_CODES,
    )
    p.add_argument("journal", type=Path)
    add_run_flags(p, retry_failed_flag=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ingest.cli import run as run_cmd
    from ingest.errors import JournalError
    from ingest.journal import peek_header

    try:
        header = peek_header(args.journal)
    except JournalError as exc:  # a folder, or a path under a file
        print(f"ingest: error: {exc}", file=sys.stderr)
        return run_cmd.EXIT_USAGE
    if header is None:
        print(f"ingest: error: {args.journal} is not an ingest journal", file=sys.stderr)
        return run_cmd.EXIT_USAGE
    args.manifest = Path(header.manifest)
    args.provider = header.provider
    args.retry_failed = True
    return run_cmd.run(args)
