"""`ingest validate` says what a run will do, in the run's words: an image its conversion
fails is a failed item (``fail_item/convert_failed``, as `ingest status --failed` names it),
not a rejected one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

import ingest
from ingest.api.wiring import sim_settings
from tests.images import image_bytes
from tests.results import journal_of

PNG = image_bytes("png", 300, 1)


def validate_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    from ingest.cli.main import main

    main(["validate", *argv, "--json"])
    document: dict[str, Any] = orjson.loads(capsys.readouterr().out)
    return document


def test_a_damaged_heic_is_the_failure_validate_predicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """validate said 'rejected: cannot convert heic (damaged …)' while the run counted
    'fail_item/convert_failed: cannot convert heic: damaged …': two classes, two wordings."""
    pytest.importorskip("pillow_heif")
    from PIL import Image
    from pillow_heif import register_heif_opener

    register_heif_opener()
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (32, 24), (200, 30, 40)).save(folder / "whole.heic")
    whole = (folder / "whole.heic").read_bytes()
    (folder / "cut.heic").write_bytes(whole[: len(whole) // 2])
    (folder / "ok.png").write_bytes(PNG)

    checked = validate_json(capsys, str(folder), "--provider", "novita", "--convert")
    [predicted] = checked["problems"]
    result = ingest.upload_sync(
        folder, provider="novita", sim=sim_settings(store_dir=tmp_path / "s"), convert=True
    )
    [failure] = ingest.failures(journal_of(result))
    assert (result.failed, result.rejected) == (1, 0)
    assert predicted["reason"] == failure.reason
    assert (predicted["class"], predicted["action"], predicted["code"]) == (
        failure.kind,
        failure.action,
        failure.code,
    )
    [row] = checked["by_reason"]  # validate's table row: the run's class and reason
    assert row.startswith("fail_item/convert_failed: cannot convert heic: damaged or truncated")
