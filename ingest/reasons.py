"""Problem groups: a reason with what differs from item to item taken out.

Owns `group(reason)`, the key under which problems are counted: the rows of
`ingest validate`'s table and the `problems` of `ingest status` (and its
`--json`). Two items rejected for the same cause get the same group, and a
group is whole words, never text cut at a width.

How it works: the reasons the local checks write (`validate.py`,
`manifest/`; a fetched file's, `remote.py`) name their file by its absolute
path (a fetched one by its URL), at the end after ": " or
after "cannot open" / "cannot read" before ": ", and quote ids, names and
snippets with `repr`. `group` removes such paths (a word starting with "/" or
"~/" or a URL's scheme, up to the next ": " or the end), folder-relative paths after
"cannot read directory" and in "not valid UTF-8" reasons, turns quoted values (not a
double-quoted field name such as "path") into '…',
line, column, byte, row and row group positions into N (a number whole, its thousands
separators too) and a "too large" file's own size into nothing, then tidies the punctuation left behind. What stays is the cause
with the limits that explain it ("unsupported image type bmp (scenario accepts
avif, gif, heic, jpeg, png, tiff, webp)").

Invariants: `group` never raises and is idempotent; it keeps a reason that
names no path as it is (but for positions and quotes).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

# How the reason of an item a provider's same-name limit holds back starts
# (`namelimit.NameLimit`): the CLI words it apart from a rejection, the summary hints apart.
HELD = "held back"

Rules = tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...]


@functools.cache
def _rules() -> Rules:
    """Compiled at the first problem, not at import: ~10 regular expressions, a few ms of
    every run's start that a run with no problem never used."""
    return (
        # An absolute path (a word starting with / or ~/), or a URL source's shown URL (a
        # fetched file's rejection names it as a local one names its path), up to the next
        # ": " or the end. A scheme alone ("fetches only http://, https:// and s3:// URLs")
        # is no URL: a URL's host follows its "://".
        (re.compile(r"(?:(?<=\s)|^)(?:~?/|[A-Za-z][A-Za-z0-9+.-]*://(?=[\w\[])).*?(?=: |$)"), ""),
        # A quoted value (repr of an id, a name, a path, a snippet): '…'. A double-quoted
        # bare word is a fixed field name ("path", "file_name"), not a value: it stays (a
        # repr uses double quotes only around text holding a single quote).
        (
            re.compile(r"(\"[A-Za-z_]\w*\")|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""),
            lambda quoted: quoted[1] or "'…'",
        ),
        # A folder-relative path named by the folder walk.
        (re.compile(r"(?<=cannot read directory )\S.*?/(?=[:;]|$)"), ""),
        (re.compile(r"(not valid UTF-8(?: \([^)]*\))?): .*$"), r"\1"),
        # Positions and sizes that differ from item to item.
        # (A Parquet file's rows: "row 7 not read: row group 2 is damaged from row 0 on" is one
        # group for every row of that row group, not a table line each.)
        # A number whole, with its thousands separators ("byte 16,151": not "byte N,151").
        (
            re.compile(
                r"\b(lines?|columns?|bytes?|rows?|row groups?) (?:\d{1,3}(?:,\d{3})+|\d+)"
                r"(?:-\d+)?(?![\d,]\d)"
            ),
            r"\1 N",
        ),
        # (Whole hex bytes only: "byte N after" stays; it lost "af" to this rule: "byte …ter".)
        (
            re.compile(r"\bbyte N(?: [0-9a-f]{2})+\b|\bbyte [0-9a-f]{2}(?: [0-9a-f]{2})*\b"),
            "byte …",
        ),
        (re.compile(r"\bbyte N is 0x[0-9a-f]{2}\b"), "byte N is 0x…"),  # a caption's bad byte
        (re.compile(r"\bthe file at [\d,]*\d\b"), "the file at N"),  # a cut file's size
        (re.compile(r"\bbinary data starting(?: [0-9a-f]{2})+"), "binary data"),
        (re.compile(r"^too large: [^,]*, "), "too large, "),
        # When an item held back by a same-name limit can go (`namelimit.NameLimit`).
        (
            re.compile(r"\b(go after|not before) (?:\d{4}-\d\d-\d\d )?\d\d:\d\d\b"),
            r"\1 the time given",
        ),
        # Punctuation a removed path leaves behind.
        (re.compile(r"\s+(?=[:;,)])|(?<=\()\s+"), ""),
        (re.compile(r"[:;,]\s*$|\s{2,}"), " "),
    )


def group(reason: str) -> str:
    """The problem group of `reason`: its cause, without the paths and positions of one item."""
    text = reason
    for pattern, replacement in _rules():
        text = pattern.sub(replacement, text)
    return text.strip() or reason.strip()
