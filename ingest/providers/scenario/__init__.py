"""Scenario: one folder for its adapter and the modules it is built from.

- `adapter`: `ScenarioProvider`, the adapter (inline and assets modes, captions, attach).
- `jsonbody`: `JsonUploads`, images under 3.5 MB as base64 in JSON (``/assets``, inline).
- `multipart`: `MultipartUploads`, the ``/uploads`` path (and its job) for larger ones.
- `wire`: the error envelope and its triage, answer readers, base64 JSON bodies.

Re-exports the names code outside the folder imports.
"""

from __future__ import annotations

from ingest.providers.scenario.adapter import (
    ASSET_LIMIT,
    ATTACH_BATCH,
    BASE64_LIMIT,
    FORMATS,
    ScenarioProvider,
)

__all__ = ["ASSET_LIMIT", "ATTACH_BATCH", "BASE64_LIMIT", "FORMATS", "ScenarioProvider"]
