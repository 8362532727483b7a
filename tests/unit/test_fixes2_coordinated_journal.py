"""A coordinated library run names no journal: `Upload.journal` is None, as `Result.journal` is.

It returned the default path beside the manifest, which a worker never writes (its record is
the coordinator's). Opening the handle connects to nothing, so no redis-server is needed here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import ingest
from tests.images import make_dataset, write_jsonl_manifest


def test_a_coordinated_upload_has_no_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOVITA_API_KEY", "k-fixes2")
    manifest = write_jsonl_manifest(make_dataset(tmp_path / "img", 1), tmp_path / "m.jsonl")
    where: dict[str, Any] = {"base_url": "http://127.0.0.1:9", "provider": "novita"}
    assert ingest.open_upload(manifest, **where).journal == manifest.with_name(
        "m.jsonl.novita.journal"
    )
    shared = ingest.open_upload(manifest, coordinator="redis://127.0.0.1:9/0", **where)
    assert shared.journal is None
