"""One manifest entry checked and turned into an `Item`: the fields, the path, the key.

Owns what every format shares once its own syntax is parsed: the field names
a manifest may use (and the "did you mean" hint for a name people reach for
instead), the checks of a written path (not empty, no NUL, not a URL), how a
path resolves (against the manifest's directory, ``~`` expanded) and which
key an entry gets (its ``id`` when given, else the path exactly as written),
checked against the keys seen so far.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ingest.errors import ManifestError
from ingest.item import Item
from ingest.manifest.dedupe import Entry, Held, duplicate
from ingest.manifest.lines import clip
from ingest.manifest.packed.naming import SHARDS, split_member
from ingest.manifest.seenkeys import HOLD, KeyCheck
from ingest.redact import shown_url, url_key

FIELDS = ("path", "id", "name", "content_type", "caption", "metadata")
FIELD_SET = frozenset(FIELDS)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")
_REMOTE = re.compile(r"\s*(?:https?|s3)://[^/\s]", re.I)  # a remote source (`ingest.remote`)

# Names people reach for instead of ours, best guess first. The first one the
# entry does not already have becomes the "did you mean" suggestion.
_ALIASES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        (
            "file",
            "filepath",
            "file_path",
            "image",
            "img",
            "image_path",
            "src",
            "source",
            "local_path",
            "location",
            "url",
            "uri",
            "fname",
            "path_to_file",
        ),
        ("path",),
    ),
    **dict.fromkeys(("filename", "file_name", "basename"), ("path", "name")),
    **dict.fromkeys(("key", "uid", "uuid", "image_id", "identifier", "_id", "ident"), ("id",)),
    **dict.fromkeys(("title", "display_name", "label_name"), ("name",)),
    **dict.fromkeys(
        ("type", "mime", "mimetype", "mime_type", "media_type", "contenttype", "format"),
        ("content_type",),
    ),
    **dict.fromkeys(
        ("text", "prompt", "description", "desc", "label", "alt", "alt_text", "captions"),
        ("caption",),
    ),
    **dict.fromkeys(("meta", "extra", "extras", "attributes", "properties", "tags"), ("metadata",)),
}


def _path_problem(written: str) -> str | None:
    if not written.strip():
        return "empty path"
    if "\x00" in written:
        return "path contains a NUL character"
    if _URL.match(written) or written.startswith("data:"):
        return (
            f"path is a URL ({clip(shown_url(written), 80)!r}); ingest fetches only http://, "
            "https:// and s3:// URLs: download it and list the local path"
        )
    return None


def _resolve(base: str, written: str) -> Path:
    if written.startswith("~"):
        written = os.path.expanduser(written)
    return Path(os.path.join(base, written))


def make_entry(
    *,
    written: str,
    id_: str | None,
    line: int,
    source: str,
    base: str,
    seen: KeyCheck,
    name: str | None = None,
    content_type: str | None = None,
    caption: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Entry:
    url = written.strip() if _REMOTE.match(written) else None  # fetched before its upload
    problem = None if url is not None else _path_problem(written)
    if problem is not None:
        return ManifestError(problem, source=source, line=line)
    path, member = _resolve(base, written), None
    named = None if url is not None else split_member(written)
    if url is not None:
        path, written = Path(shown_url(url)), written if id_ is not None else url_key(url)
    elif named is not None:  # shard.tar#member.png
        path = _resolve(base, named[0])
        found = SHARDS.find(str(path), named[1])
        if isinstance(found, str):
            return ManifestError(found, source=source, line=line)
        member = found
    key = written if id_ is None else id_
    first = seen.check(key, line)
    what = "path" if id_ is None else "id"
    if isinstance(first, int):
        return duplicate(key, what, first, source, line)
    item = Item(
        key=key,
        path=path,
        line=line,
        name=name,
        content_type=content_type,
        caption=caption,
        metadata=metadata,
        member=member,
        url=url,
    )
    return Held(item, what) if first is HOLD else item


def suggest(name: str, present: set[str]) -> str | None:
    """The field a mistyped `name` most likely meant, or None."""
    norm = normalize(name)
    candidates: tuple[str, ...]
    if norm in FIELD_SET:
        candidates = (norm,)
    elif norm in _ALIASES:
        candidates = _ALIASES[norm]
    else:
        import difflib  # only for a mistake (start-up time)

        candidates = tuple(difflib.get_close_matches(norm, FIELDS, n=2, cutoff=0.6))
    for candidate in candidates:
        if candidate not in present:
            return candidate
    return None


def unknown_keys(unknown: list[str], present: set[str]) -> str:
    parts = []
    for key in unknown:
        hint = suggest(key, present)
        shown = repr(clip(key, 40))
        parts.append(f"{shown} (did you mean {hint!r}?)" if hint else shown)
    noun = "key" if len(unknown) == 1 else "keys"
    return f"unknown {noun} {', '.join(parts)}; allowed keys: {', '.join(FIELDS)}"


def normalize(name: str) -> str:
    """A field or column name as compared: trimmed, lower case, ``-`` and spaces as ``_``."""
    return name.strip().lower().replace("-", "_").replace(" ", "_")
