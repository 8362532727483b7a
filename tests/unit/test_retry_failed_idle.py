"""`ingest retry-failed JOURNAL` on a run that ended with nothing failed (newcomer8).

It asked for the API key (exit 2 without one), then resumed the whole run,
while the shared run's retry said "nothing to retry" and exited 0. Now both
say so before any key is asked for: exit 0 when every entry is done, 1 when
some stay rejected (exit 0 means every item is done).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.cli.main import main
from tests.images import make_image


def _photos(tmp_path: Path, broken: bool = False) -> Path:
    photos = tmp_path / "photos"
    photos.mkdir()
    for n in range(3):
        make_image(photos / f"{n}.png", "png", 256, n)
    if broken:
        (photos / "3.png").write_bytes(b"not an image")  # rejected: not a PNG
    return photos


def test_nothing_failed_needs_no_key_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = _photos(tmp_path)
    assert main(["run", str(photos), "--provider", "novita", "--sim", "--quiet"]) == 0
    journal = photos / ".ingest" / "novita.journal"
    capsys.readouterr()
    monkeypatch.delenv("NOVITA_API_KEY", raising=False)
    assert main(["retry-failed", str(journal)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"nothing failed in {journal} (3 of 3 done): nothing to retry\n"


def test_rejected_entries_stay_rejected_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = _photos(tmp_path, broken=True)
    assert main(["run", str(photos), "--provider", "novita", "--sim", "--quiet"]) == 1
    journal = photos / ".ingest" / "novita.journal"
    capsys.readouterr()
    assert main(["retry-failed", str(journal)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"nothing failed in {journal} (3 of 4 done, 1 rejected, which stay")
    assert f"ingest status {journal} --failed lists them" in err


def test_a_failed_item_is_retried(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photos = _photos(tmp_path)
    # Every PUT refused (500) with no retry left: each item fails, then the retry uploads it.
    faults = ["--sim-faults", "put.500=1", "--max-attempts", "1", "--retry-window-s", "0"]
    assert main(["run", str(photos), "--provider", "novita", "--sim", "--quiet", *faults]) == 1
    journal = photos / ".ingest" / "novita.journal"
    capsys.readouterr()
    assert main(["retry-failed", str(journal), "--quiet"]) == 0
    assert "nothing to retry" not in capsys.readouterr().err
