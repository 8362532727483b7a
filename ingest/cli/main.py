"""Entry point of the `ingest` command: builds the parser from one module per command.

Owns the command table, `ingest --version`, and how the process leaves:
`run` and `bench` with `os._exit` once everything is flushed (see `entry`),
every other command through the interpreter's normal exit.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from ingest import __version__, arenas

# Command modules are imported lazily by name so `ingest status` does not pay for aiohttp.
COMMANDS: tuple[str, ...] = (
    "run",
    "validate",
    "status",
    "export",
    "retry-failed",
    "repair",
    "config",
    "sim",
    "bench",
)

# Commands that skip the interpreter's teardown (see `entry`), only where it
# was measured to matter: `ingest run` of 40 x 16 MiB on loopback spent
# 50-100 ms of a sub-second run tearing modules down (benchmarks/README.md,
# "large"); `ingest bench` is the same short run, timed by its user. `ingest
# sim` serves until stopped, where 50 ms is nothing, and the other commands
# were never measured: they keep the normal exit (atexit handlers, finalizers).
QUICK_EXIT: frozenset[str] = frozenset({"run", "bench"})
UPLOADS: frozenset[str] = frozenset({"run", "retry-failed", "bench", "validate"})  # arenas.limit


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `only` (what `main` builds for a named command).

    `only="--version"` registers no command: the flag prints and exits while parsing.
    """
    parser = argparse.ArgumentParser(
        prog="ingest",
        description="Upload image datasets to providers' pre-signed URLs, resumably.",
    )
    parser.add_argument("--version", action="version", version=f"ingest {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if only == "--version":
        return parser
    for name in COMMANDS if only is None else (only,):
        module = importlib.import_module(f"ingest.cli.{name.replace('-', '_')}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # A named command imports and registers itself only (start-up time counts on
    # short runs); anything else (`--help`, a typo) gets the full list.
    parser = build_parser(argv[0] if argv and argv[0] in (*COMMANDS, "--version") else None)
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except BrokenPipeError:
        # The reader went away (`ingest export … | head`): not an error of ours. An
        # upload never claims success this way (its Reporter handles EPIPE itself;
        # this is a print outside it): 141, as `ingest run` exits when its output closes.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141 if args.command in ("run", "retry-failed") else 0
    return code


def entry() -> NoReturn:
    """The `ingest` command: `main`, then a quick exit for the commands in `QUICK_EXIT`.

    By the time `main` returns, everything that must outlive the process is
    written and closed (the journal synced, sessions and emulators shut). What
    is left is the interpreter tearing down every module, 50-100 ms that a
    short run pays for nothing (a tenth of a 640 MiB upload on loopback), so
    for `run` and `bench` the standard streams are flushed and the process
    leaves with `os._exit`. Every other command exits normally (atexit
    handlers and finalizers run).
    """
    argv = sys.argv[1:]
    if argv and argv[0] in UPLOADS:
        arenas.limit()  # before any thread: glibc's per-thread arenas kept image bytes (arenas.py)
    code = main(argv)
    if argv and argv[0] in QUICK_EXIT:
        if (pool := sys.modules.get("ingest.convert_pool")) is not None:
            pool.close_all()  # --convert's processes, reaped: their CPU is the run's (atexit's job)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a reader gone, a stream closed
                stream.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
