"""Entry point of the `ingest` command: builds the parser from one module per command.

Owns the command table, `ingest --version`, how a mistake in the command line
is said (`Parser`: one line, the closest option, exit 2), and how the process leaves:
`run` and `bench` with `os._exit` once everything is flushed (see `entry`),
every other command through the interpreter's normal exit.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ingest import __version__, arenas
from ingest.cli import startup

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
GC_PAUSED: frozenset[str] = frozenset({"run"})  # startup.pause: every path of `run` resumes


class Parser(argparse.ArgumentParser):
    """argparse's parser, its mistakes said in ingest's one line (exit 2), with the closest
    option or choice, no usage block: ``ingest run: error: unrecognized arguments: --providr
    (did you mean --provider?); see 'ingest run --help'``. Subcommands' parsers are of this
    class too. ``epilog_of`` renders a parser's epilog only when its help is shown (`run`'s
    exit codes: their text, ~0.5 ms of a run's start-up, is for --help)."""

    def __init__(
        self, *args: Any, epilog_of: Callable[[], str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._epilog_of = epilog_of

    def format_help(self) -> str:
        if self._epilog_of is not None:
            self.epilog, self._epilog_of = self._epilog_of(), None
        return super().format_help()

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._given = list(sys.argv[1:] if args is None else args)
        parsed, extras = super().parse_known_args(args, namespace)
        command = self._command_parser(parsed)
        if extras and command is not None:  # argparse tells them at the top, naming no command
            command.error(unrecognized(extras, command))
        return parsed, extras

    def _command_parser(self, parsed: argparse.Namespace) -> argparse.ArgumentParser | None:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(parsed, "command", None) or "")
                return chosen if isinstance(chosen, argparse.ArgumentParser) else None
        return None

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse's own asks shutil for the width at every add_argument (it checks the
        # metavar): shutil, with bz2 and lzma, is ~6 ms of a run's start-up. The same width.
        make: Callable[..., argparse.HelpFormatter] = self.formatter_class  # all take width
        return make(prog=self.prog, width=help_width())

    def error(self, message: str) -> NoReturn:
        choice = _INVALID_CHOICE.search(message)
        if choice is not None:
            named = [c.strip().strip("'") for c in choice[2].split(",")]
            message += _did_you_mean(choice[1], named, 0.6)
        elif message.startswith("the following arguments are required"):
            # `--providr novita`: the misspelt flag is the cause, not the flag it left out.
            unknown = [a for a in getattr(self, "_given", ()) if _unknown_option(a, self)]
            message = unrecognized(unknown, self) if unknown else message
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def help_width() -> int:
    """argparse's width, ``shutil.get_terminal_size().columns - 2``, without shutil: the
    ``COLUMNS`` variable if a positive number, else the terminal of ``sys.__stdout__``,
    else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80
    return columns - 2


# argparse's words for a value not among an argument's choices (Python 3.11-3.13).
_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


def unrecognized(extras: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """What argparse says of `extras`, each option with the closest of `parser`'s."""
    options = _options(parser)
    said = [
        extra + (_did_you_mean(extra.partition("=")[0], options) if extra.startswith("-") else "")
        for extra in extras
    ]
    return f"unrecognized arguments: {', '.join(said)}"


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [o for action in parser._actions for o in action.option_strings]


def _unknown_option(arg: str, parser: argparse.ArgumentParser) -> bool:
    """Whether `arg` is a long option `parser` does not know, nor as an abbreviation."""
    name = arg.partition("=")[0]
    return name.startswith("--") and not any(o.startswith(name) for o in _options(parser))


def _did_you_mean(given: str, known: Sequence[str], cutoff: float = 0.75) -> str:
    # 0.75 for options: `--retry-failed` is not "--retry-window-s" (0.67), `--base` is
    # `--base-url` (0.75); 0.6 for a choice's short words (`rnu`: `run`, 0.67).
    import difflib  # only on a mistake: a run's start-up does without it

    close = difflib.get_close_matches(given, known, n=1, cutoff=cutoff)
    return f" (did you mean {close[0]}?)" if close else ""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `only` (what `main` builds for a named command).

    `only="--version"` registers no command: the flag prints and exits while parsing.
    """
    parser = Parser(
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
    if argv and argv[0] in GC_PAUSED:
        startup.pause()  # resumed where the run's start-up ends (cli/run.py)
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
