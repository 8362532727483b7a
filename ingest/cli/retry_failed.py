"""`ingest retry-failed JOURNAL`: re-queue the items a run could not upload.

Reads the run's binding from the journal's header and runs it again with
`--retry-failed`: items the provider rejected, items whose retries ran out,
and (with `--reupload-changed`) items whose file changed since they were
uploaded. Takes the same flags as `ingest run`.

How it works: the header names the provider, the manifest, the endpoint
("emulator", or a base URL) and the provider's run-level values (a model or
order id, Scenario's mode and preset). Each becomes the flag a user would
have typed (`--sim`, `--base-url`, `--mode`, ...) unless that flag is given,
so a flag that disagrees with the journal is refused by the binding check
like any run's, and the config file's values never replace the journal's.

A shared run (`--coordinator URL --run-name NAME` instead of JOURNAL): its
failed items are made pending again as new chunks (`ingest.coord.retry`),
then the command works as one of the run's workers, with the provider,
endpoint and run-level values its plan records and the manifest at the path
the planning worker had (`--manifest` for this machine's copy); run the
same command, or `ingest run ... --coordinator`, on more machines to share
the retry. An ended run with nothing failed, on a journal or shared, is said
so before any key is asked for: exit 0, or 1 when entries stay rejected
(`_nothing_failed`, `shared_run.retry_failed`).

Invariants: a journal made with `--sim` is retried against the built-in
emulator (in this process; nothing leaves the machine), one made against a
base URL against that URL, never the provider's default host. A journal that
does not record its endpoint (an older one) is retried against this run's,
and the run says so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ingest.cli import coordinated, shared_run
from ingest.cli.exits import HelpFormatter, help_text
from ingest.cli.run import add_run_flags


def register(sub: Any) -> None:
    p = sub.add_parser(
        "retry-failed",
        help="upload again the items a run could not upload",
        description=(
            "Resume the run recorded in JOURNAL and retry its failed items too (after you fixed "
            "the cause). Same as `ingest run MANIFEST --provider P --journal JOURNAL "
            "--retry-failed` with the endpoint (--sim or --base-url), mode, model and order "
            "the journal was made with. With --coordinator URL --run-name NAME instead of "
            "JOURNAL: the shared run's failed items are made pending again and this process "
            "works as one of its workers."
        ),
        epilog_of=help_text,  # as `run`'s: rendered only for --help
        formatter_class=HelpFormatter,
    )
    p.add_argument("journal", type=Path, nargs="?", help="the run's journal")
    add_run_flags(p, retry_failed_flag=False)
    coordinated.add_flags(p)
    shared_run.add_manifest_flag(p, "the run's manifest here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ingest.cli import run as run_cmd
    from ingest.errors import JournalError
    from ingest.journal import EMULATOR, peek_header

    if args.coordinator is not None or args.run_name is not None or args.journal is None:
        return shared_run.retry_failed(args, _default)
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
    if header.endpoint == EMULATOR:
        # A --base-url given is left to the binding check, which refuses it.
        args.sim = args.sim or args.provider__base_url is None
    elif header.endpoint is not None and not args.sim:
        _default(args, "base_url", header.endpoint)
    for key, value in header.bind.items():
        _default(args, key, value)
    idle = None if args.reupload_changed else _nothing_failed(args)
    if idle is not None:  # before any key is asked for, as for a shared run
        print(idle[0], file=sys.stderr)
        return run_cmd.EXIT_OK if idle[1] else run_cmd.EXIT_FAILED
    return run_cmd.run(args)


def _nothing_failed(args: argparse.Namespace) -> tuple[str, bool] | None:
    """If the journal's run has ended with nothing failed (every entry done or rejected, by
    the journal and the current manifest) and these flags pass its binding check: the line
    that says so, and whether every entry is done (exit 0; rejected entries stay rejected:
    exit 1). None: a retry has work, or the run has something to refuse."""
    from ingest.api.wiring import check_journal, prepare
    from ingest.cli.options import settings_from_args
    from ingest.cli.wording import nothing_to_retry
    from ingest.errors import IngestError
    from ingest.journal.report import status

    journal: Path = args.journal
    try:
        settings = settings_from_args(args, args.provider)
        plan = prepare(args.manifest, provider=args.provider, journal=journal,
                       config=settings, format=args.format, keys="none")  # fmt: skip
        check_journal(plan, emulator=args.sim, force=args.force)
        s = status(journal)
    except IngestError:
        return None  # the run names what is wrong
    if s.total is None or s.failed or s.in_flight or s.changed or s.done + s.rejected < s.total:
        return None
    return nothing_to_retry(str(journal), s.done, s.total, s.rejected, str(journal))


def _default(args: argparse.Namespace, key: str, value: str) -> None:
    """Set the provider flag `key` to the journal's `value` unless the user gave it."""
    dest = f"provider__{key}"
    if hasattr(args, dest) and getattr(args, dest) is None:
        setattr(args, dest, value)
