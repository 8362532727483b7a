"""JSON lines manifests: one JSON object per line (``*.jsonl``, ``*.ndjson``, ``*.json``).

Owns the syntax of one line: a JSON object whose keys are the entry's fields
(``path`` required; ``id`` a string or an integer; ``name``, ``content_type``,
``caption`` strings; ``metadata`` an object), and a message for each way a
line gets them wrong. Blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

from ingest.errors import ManifestError
from ingest.manifest.dedupe import Entry
from ingest.manifest.entry import FIELD_SET, make_entry, unknown_keys
from ingest.manifest.lines import load_line, open_manifest, physical_lines, too_long
from ingest.manifest.seenkeys import KeyCheck


def read_jsonl(path: Path, source: str, base: str, seen: KeyCheck) -> Generator[Entry, None, None]:
    with open_manifest(path, source) as fh:
        for line, raw in physical_lines(fh):
            if raw is None:
                yield ManifestError(too_long(), source=source, line=line)
                continue
            text = raw.lstrip()
            if not text or text.startswith(b"#"):
                continue
            yield _jsonl_entry(raw, line, source, base, seen)


def _jsonl_entry(raw: bytes, line: int, source: str, base: str, seen: KeyCheck) -> Entry:
    def fail(reason: str) -> ManifestError:
        return ManifestError(reason, source=source, line=line)

    obj, problem = load_line(raw)
    if problem is not None:
        return fail(problem)
    if not isinstance(obj, dict):
        return fail(f'expected a JSON object with a "path" key, got {_json_type(obj)}')
    unknown = [key for key in obj if key not in FIELD_SET]
    if unknown:
        return fail(unknown_keys(unknown, set(obj)))

    written = obj.get("path")
    if not isinstance(written, str):
        if "path" not in obj:
            return fail('missing required key "path"')
        return fail(f'"path" must be a string, got {_json_type(written)}')

    id_ = obj.get("id")
    if isinstance(id_, int) and not isinstance(id_, bool):
        id_ = str(id_)
    elif id_ is not None and not isinstance(id_, str):
        return fail(f'"id" must be a string or an integer, got {_json_type(id_)}')
    if id_ is not None and not id_.strip():
        return fail('empty "id"')

    strings: dict[str, str | None] = {}
    for field in ("name", "content_type", "caption"):
        value = obj.get(field)
        if value is not None and not isinstance(value, str):
            return fail(f'"{field}" must be a string, got {_json_type(value)}')
        strings[field] = value
    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return fail(f'"metadata" must be an object, got {_json_type(metadata)}')

    return make_entry(
        written=written,
        id_=id_,
        line=line,
        source=source,
        base=base,
        seen=seen,
        name=strings["name"],
        content_type=strings["content_type"],
        caption=strings["caption"],
        metadata=metadata,
    )


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
