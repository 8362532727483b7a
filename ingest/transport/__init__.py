"""The lean HTTP/1.1 transport of the storage PUTs (`send`) and the provider API calls (`call`);
see `pool`, `connection`, `response`."""

from __future__ import annotations

from ingest.transport.connection import BadAnswer, Disconnected
from ingest.transport.pool import ConnectFailed, Pool, Stale, TLSFailed, UnsafeRequest
from ingest.transport.response import BODY_CAP, Answer

__all__ = [
    "BODY_CAP",
    "Answer",
    "BadAnswer",
    "ConnectFailed",
    "Disconnected",
    "Pool",
    "Stale",
    "TLSFailed",
    "UnsafeRequest",
]
