"""Entry point of the `ingest` command: builds the parser from one module per command."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

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


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `only` (what `main` builds for a named command)."""
    parser = argparse.ArgumentParser(
        prog="ingest",
        description="Upload image datasets to providers' pre-signed URLs, resumably.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS if only is None else (only,):
        module = importlib.import_module(f"ingest.cli.{name.replace('-', '_')}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # A named command imports and registers itself only (start-up time counts on
    # short runs); anything else (`--help`, a typo) gets the full list.
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except BrokenPipeError:
        # The reader went away (`ingest export … | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


def entry() -> NoReturn:  # pragma: no cover - exercised by every CLI test, in a subprocess
    """The `ingest` command: `main`, then a quick exit.

    By the time `main` returns, everything that must outlive the process is
    written and closed (the journal synced, sessions and emulators shut). What
    is left is the interpreter tearing down every module, 50-100 ms that a
    short run pays for nothing (a tenth of a 640 MiB upload on loopback), so
    the standard streams are flushed and the process leaves with `os._exit`.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader gone, a stream closed
            stream.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
