"""The exit codes of `ingest run` (and `retry-failed`) and what each means: the one text.

Owns the codes, their meanings for a run and for a dry run, which code an
error that ends a command before its run is (`out_of_room`, from `ingest.errors`), and their two
renderings: the epilog of `run --help` and `retry-failed --help` (`help_text`,
one code a line) and the README's exit code tables (`markdown`; a test checks
that the README holds exactly these rows), so the help and the README cannot
say different things.

Invariants: a meaning is Markdown with `code` spans only; the help shows it
with the backquotes dropped.
"""

from __future__ import annotations

import argparse
import textwrap
from dataclasses import dataclass

from ingest.errors import out_of_room as out_of_room  # re-exported: where callers import it


@dataclass(frozen=True, slots=True)
class ExitCode:
    """One exit code and what it means."""

    code: int
    meaning: str  # Markdown (`code` spans; `\\|` for a pipe inside the README's table)


EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE: the reader of stdout (or stderr) went away

RUN: tuple[ExitCode, ...] = (
    ExitCode(
        EXIT_OK,
        "every entry of the manifest is done (uploaded by this run, or done before and "
        "unchanged); records of entries since removed from the manifest do not count. Also "
        "when Ctrl-C or a closed output came after the last one was done (`N of N done: the "
        "run is complete`)",
    ),
    ExitCode(
        EXIT_FAILED,
        "the run finished, but some items are not done: failed, rejected or unfinished "
        "(see the summary; fix and run `ingest retry-failed`; those held back by Autoenhance's "
        "30 file names an hour: run again after the time given), or files changed since their "
        "upload and not uploaded again (`N files changed since upload; run with "
        "--reupload-changed to upload them again`)",
    ),
    ExitCode(
        EXIT_USAGE,
        "refused: the command must change. Bad usage (a misspelt flag: `did you mean "
        "--provider?`), configuration, manifest file or journal, or nothing to upload (an "
        "empty manifest, a folder, shard or Parquet file without an image); nothing was "
        "written or uploaded",
    ),
    ExitCode(
        EXIT_STOPPED,
        "stopped by what the run depends on, whenever it happened: bad key, no balance, an "
        "API or storage host unreachable from the start (`cannot reach https://…: connection "
        "refused` or `connection timed out`), provider outage (circuit breaker), a full disk "
        "(or quota, or file size limit) at the journal's opening as mid-run",
    ),
    ExitCode(
        EXIT_INTERRUPTED,
        "interrupted (Ctrl-C) before every entry was done; run the same command to resume",
    ),
    ExitCode(
        EXIT_OUTPUT_CLOSED,
        "the output was closed (`ingest run … --json \\| head`) before every entry was done: "
        "the run drained and stopped; run the same command to resume",
    ),
)

DRY_RUN: tuple[ExitCode, ...] = (
    ExitCode(
        EXIT_OK,
        "nothing would be rejected and the configuration is complete: a run could start. "
        "It does not mean `done == total`: a dry run uploads nothing",
    ),
    ExitCode(EXIT_FAILED, "some entries would be rejected (each is listed, with its reason)"),
    ExitCode(
        EXIT_USAGE,
        "bad usage, configuration, manifest file or journal, or nothing to upload, refused as "
        "the run would refuse it (a missing `--model-id`, a bad `--base-url`, a journal of "
        "another run, an empty manifest)",
    ),
)


def markdown(codes: tuple[ExitCode, ...]) -> str:
    """The README's table of `codes`."""
    rows = "".join(f"| {c.code} | {c.meaning} |\n" for c in codes)
    return f"| code | meaning |\n|---|---|\n{rows}"


def help_text(width: int = 79) -> str:
    """The epilog of `run --help`: each code on a line of its own, then the dry run's."""

    def block(title: str, codes: tuple[ExitCode, ...]) -> str:
        lines = [title]
        for c in codes:
            text = c.meaning.replace("`", "").replace("\\|", "|")
            lead = f"  {c.code:<5}"
            lines.append(
                textwrap.fill(text, width, initial_indent=lead, subsequent_indent=" " * len(lead))
            )
        return "\n".join(lines)

    return (
        f"{block('exit codes:', RUN)}\n\n"
        f"{block('exit codes with --dry-run (130 and 141 as above):', DRY_RUN)}"
    )


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, but a text written on several lines (the epilog) is kept as is."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)
