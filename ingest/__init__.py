"""ingest: upload image datasets to providers' pre-signed URLs, resumably.

The library's public names; the command line lives in `ingest.cli`.

    result = await ingest.upload("photos.jsonl", provider="novita")
    result = ingest.upload_sync("photos/", provider="novita", put_concurrency=8)
    async with ingest.open_upload("photos.jsonl", provider="novita") as run: ...
    ingest.status(result.journal).done, list(ingest.export(result.journal))

Importing `ingest` is cheap (every `ingest` command pays for it): the error
classes are imported now, everything else on first use (module
`__getattr__`), so nothing imports asyncio or aiohttp until it is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ingest.errors import (
    ConfigError,
    ExportError,
    IngestError,
    JournalError,
    ManifestError,
    TransferError,
)

if TYPE_CHECKING:
    from ingest.api import (
        ItemDone,
        Observer,
        Result,
        StopReason,
        Upload,
        open_upload,
        upload,
        upload_sync,
    )
    from ingest.journal import Failure, JournalStatus, export, failures, status

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ExportError",
    "Failure",
    "IngestError",
    "ItemDone",
    "JournalError",
    "JournalStatus",
    "Landed",
    "ManifestError",
    "Observer",
    "Result",
    "StopReason",
    "TransferError",
    "Upload",
    "__version__",
    "export",
    "failures",
    "open_upload",
    "status",
    "upload",
    "upload_sync",
]

_LAZY: dict[str, str] = {
    "Failure": "ingest.journal",
    "JournalStatus": "ingest.journal",
    "export": "ingest.journal",
    "failures": "ingest.journal",
    "status": "ingest.journal",
    "ItemDone": "ingest.api",
    "Landed": "ingest.providers.base",
    "Observer": "ingest.api",
    "Result": "ingest.api",
    "StopReason": "ingest.api",
    "Upload": "ingest.api",
    "open_upload": "ingest.api",
    "upload": "ingest.api",
    "upload_sync": "ingest.api",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ingest' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
