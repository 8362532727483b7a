"""Scenario: one folder for its adapter and the two modules it is built from.

- `adapter`: `ScenarioProvider`, the adapter (inline and assets modes, attach).
- `multipart`: `MultipartUploads`, the ``/uploads`` path for images of 6 MB or more.
- `wire`: the error envelope and its triage, answer readers, base64 JSON bodies.

Re-exports the names code outside the folder imports.
"""

from __future__ import annotations

from ingest.providers.scenario.adapter import ASSET_LIMIT, ATTACH_BATCH, FORMATS, ScenarioProvider

__all__ = ["ASSET_LIMIT", "ATTACH_BATCH", "FORMATS", "ScenarioProvider"]
