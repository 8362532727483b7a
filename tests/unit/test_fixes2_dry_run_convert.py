"""`ingest run --dry-run --convert` checks types as the run with `--convert` does.

The dry run used the provider's plain capabilities, so a TIFF that `--convert` makes into a
PNG was shown rejected ("--convert converts it") although `--convert` was given.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.cli.main import main

Image = pytest.importorskip("PIL.Image")


def test_a_dry_run_with_convert_would_upload_what_the_run_converts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(folder / "a.tiff", "TIFF")
    Image.new("RGB", (32, 32), (4, 5, 6)).save(folder / "b.png", "PNG")
    command = ["run", str(folder), "--provider", "novita", "--sim", "--dry-run", "--convert"]
    assert main(command) == 0  # novita takes no TIFF: the run converts it
    err = capsys.readouterr().err
    assert "rejected" not in err and "would upload 2 files" in err
    assert not (folder / ".ingest").exists()  # nothing written
