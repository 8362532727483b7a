"""The library's front door: run uploads from Python, as `ingest run` does.

`upload` / `upload_sync` run a manifest to its end and return a `Result`;
`open_upload` gives an `Upload` handle to watch (`snapshot`), steer
(`drain`, `abort`) and wait for (`wait`) a run; an `Observer` receives each
item's outcome as it happens (`Observer` and `ItemDone` are the engine's
own, `ingest.engine.outcomes`: one definition for the engine, the CLI's
display and a library caller). `wiring` is the shared plumbing underneath
(settings, journal, emulator, sessions, adapter), used by the CLI, the
benchmark client and the contract harness too.

Importing this package is cheap: nothing here imports aiohttp until a run
opens its sessions.
"""

from __future__ import annotations

from ingest.api.handle import Upload, open_upload
from ingest.api.oneshot import upload, upload_sync
from ingest.api.result import Result, StopReason
from ingest.engine.outcomes import ItemDone, Observer

__all__ = [
    "ItemDone",
    "Observer",
    "Result",
    "StopReason",
    "Upload",
    "open_upload",
    "upload",
    "upload_sync",
]
