"""The journal's header (its line 1): what a journal is bound to.

Owns `Header` and its record shape: the provider, the manifest's path, the
endpoint (`EMULATOR` for a run against the built-in emulator, else the base
URL without user info, query or fragment; absent in journals written before
it was recorded) and the run-level values the provider binds (`bind`: an
order id, a model id and mode). Never a key or a signed query string.
`from_record` is the one check of a header read back; damage is
`JournalCorrupt` at line 1 (`bad_header` names a manifest's journals when
the file is a manifest).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, NotRequired, TypedDict

from ingest.errors import JournalCorrupt

FORMAT: Final = "ingest-journal"
VERSION: Final = 1
EMULATOR: Final = "emulator"  # the header's endpoint of a run against the built-in emulator


class HeaderRecord(TypedDict):
    journal: Literal["ingest-journal"]
    v: Literal[1]
    provider: str
    manifest: str
    endpoint: NotRequired[str]
    bind: dict[str, str]
    created: float


@dataclass(frozen=True, slots=True)
class Header:
    """What a journal is bound to (its line 1)."""

    provider: str
    manifest: str
    bind: Mapping[str, str] = field(default_factory=dict)
    created: float = 0.0
    endpoint: str | None = None  # "emulator" or a base URL; None: not recorded (older journal)

    def to_record(self) -> HeaderRecord:
        rec: HeaderRecord = {
            "journal": FORMAT,
            "v": VERSION,
            "provider": self.provider,
            "manifest": self.manifest,
            "bind": dict(self.bind),
            "created": self.created,
        }
        if self.endpoint is not None:
            rec["endpoint"] = self.endpoint
        return rec

    @classmethod
    def from_record(cls, rec: object, path: Path | str) -> Header:
        if not isinstance(rec, dict) or rec.get("journal") != FORMAT:
            raise bad_header(path)
        if rec.get("v") != VERSION:
            raise JournalCorrupt(
                f"unsupported journal version {rec.get('v')!r}", path=str(path), line=1
            )
        bind = rec.get("bind") or {}
        if not isinstance(bind, dict):
            raise JournalCorrupt(
                "malformed header: 'bind' is not an object", path=str(path), line=1
            )
        endpoint = rec.get("endpoint")
        if endpoint is not None and not isinstance(endpoint, str):
            raise JournalCorrupt(
                "malformed header: 'endpoint' is not a string", path=str(path), line=1
            )
        return cls(
            provider=str(rec.get("provider", "")),
            manifest=str(rec.get("manifest", "")),
            bind={str(k): str(v) for k, v in bind.items()},
            created=float(rec.get("created", 0.0)),
            endpoint=endpoint or None,
        )


def bad_header(path: Path | str) -> JournalCorrupt:
    """A first line that is no journal header, with the journal meant when it is a manifest.

    `ingest status photos.jsonl` (the manifest, not its journal) said only "bad header".
    """
    import glob  # here: only a bad header needs it (~0.3 ms of a run's start-up)

    path = Path(path)
    beside = sorted(str(p) for p in path.parent.glob(f"{glob.escape(path.name)}.*.journal"))
    if beside:
        hint = f"; a manifest? its journal: {', '.join(beside)}"
    elif path.suffix != ".journal":
        hint = "; a manifest? a run writes its journal beside it (MANIFEST.PROVIDER.journal)"
    else:
        hint = ""
    return JournalCorrupt(f"not an ingest journal (bad header){hint}", path=str(path), line=1)
