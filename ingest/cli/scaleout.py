"""The scale-out flags of `run` and `retry-failed` (`--coordinator`, `--run-name`,
`--chunk-lines`, `--lease`) and their checks.

Owns what a command's parser and its first checks need of a shared run, apart
from the worker's CLI (`coordinated`, with `shared_run`): a plain run builds
its parser and checks its flags without importing either.
"""

from __future__ import annotations

import argparse

from ingest.cli.options import positive_int, positive_seconds
from ingest.coord import CHUNK_LINES, LEASE_S
from ingest.errors import install_hint


def add_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group(f"scale-out ({install_hint('redis')})")
    group.add_argument(
        "--coordinator",
        metavar="URL",
        help=(
            "redis://HOST:PORT/DB: run as one worker of a run shared by every process given "
            "the same URL and run name (one manifest, one rate budget, one record)"
        ),
    )
    group.add_argument(
        "--run-name",
        metavar="NAME",
        help="the shared run's name (default: PROVIDER-MANIFESTSTEM, printed at start)",
    )
    group.add_argument(
        "--chunk-lines",
        type=positive_int,
        metavar="N",
        help=(
            f"manifest entries a chunk holds, if this worker plans the run (default: "
            f"{CHUNK_LINES}; a worker joining a run planned otherwise says it is ignored)"
        ),
    )
    group.add_argument(
        "--lease",
        type=positive_seconds,
        default=LEASE_S,
        metavar="S",
        help=(
            f"seconds a dead worker's chunk stays its own before another takes it over "
            f"(default: {LEASE_S:g}; renewed every third of it)"
        ),
    )


def check_args(args: argparse.Namespace) -> None:
    """A `ConfigError` for flags a coordinated run cannot take."""
    from ingest.errors import ConfigError

    url, name = getattr(args, "coordinator", None), getattr(args, "run_name", None)
    if name is not None and not url:
        raise ConfigError("--run-name names a shared run: give --coordinator too", key="run_name")
    if not url:
        return  # `retry-failed` has neither flag; a plain run imports nothing of ingest.coord
    from ingest.coord.connection import check_url
    from ingest.coord.names import check_run_name

    check_url(url)
    if name is not None and (why := check_run_name(name)):
        raise ConfigError(f"--run-name {name!r}: {why}", key="run_name")
    for flag, given in (
        ("--sim", args.sim),
        ("--dry-run", args.dry_run),
        ("--journal", args.journal),
    ):
        if given:
            raise ConfigError(
                f"{flag} cannot be used with --coordinator (workers share the coordinator's "
                "record, not a journal or an emulator of their own: point --base-url at one "
                "`ingest sim` to try it)",
                key="coordinator",
            )
