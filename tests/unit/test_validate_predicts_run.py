"""`ingest validate` says what a run will do, in the run's words: an image its conversion
fails is a failed item (``fail_item/convert_failed``, as `ingest status --failed` names it),
not a rejected one; the files a run's note says it skipped are the ones validate lists,
a shard's non-image members included.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import orjson
import pytest

import ingest
from ingest.api.wiring import sim_settings
from ingest.manifest import WalkStats, read_manifest
from ingest.manifest.seekahead import SeekAhead
from tests.images import image_bytes
from tests.results import journal_of

PNG = image_bytes("png", 300, 1)


def validate_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    from ingest.cli.main import main

    main(["validate", *argv, "--json"])
    document: dict[str, Any] = orjson.loads(capsys.readouterr().out)
    return document


@pytest.mark.parametrize("cut", ["header", "tail"])
def test_a_damaged_heic_is_the_failure_validate_predicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cut: str
) -> None:
    """validate said 'rejected: cannot convert heic (damaged …)' while the run counted
    'fail_item/convert_failed: cannot convert heic: damaged …': two classes, two wordings.
    A HEIC cut in its image data (its header whole) passed validate, and the run failed it."""
    pytest.importorskip("pillow_heif")
    from PIL import Image
    from pillow_heif import register_heif_opener

    register_heif_opener()
    folder = tmp_path / "photos"
    folder.mkdir()
    if cut == "header":  # half of a tiny file: its header is cut too
        Image.new("RGB", (32, 24), (200, 30, 40)).save(folder / "whole.heic")
        keep = 1 / 2
    else:  # the last bytes of its image data
        Image.effect_noise((64, 48), 40).convert("RGB").save(folder / "whole.heic")
        keep = 0.98
    whole = (folder / "whole.heic").read_bytes()
    (folder / "cut.heic").write_bytes(whole[: int(len(whole) * keep)])
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


@pytest.mark.parametrize("fmt", ["tiff", "bmp"])
def test_a_tiff_or_bmp_cut_in_its_image_data_is_the_failure_validate_predicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """Behind a header that reads, a TIFF's strips or a BMP's rows cut short passed validate
    ('converted from tiff to jpeg') and the run failed it ('image file is truncated (830 bytes
    not processed)'): now both say where its data ends, as for a HEIC."""
    from PIL import Image

    folder = tmp_path / "scans"
    folder.mkdir()
    Image.effect_noise((64, 48), 40).convert("RGB").save(folder / f"whole.{fmt}")
    whole = (folder / f"whole.{fmt}").read_bytes()
    (folder / f"cut.{fmt}").write_bytes(whole[:-100])

    checked = validate_json(capsys, str(folder), "--provider", "novita", "--convert")
    [predicted] = checked["problems"]
    assert predicted["reason"] == (
        f"cannot convert {fmt}: damaged or truncated: its image data ends at byte "
        f"{len(whole):,}, the file at {len(whole) - 100:,}: {folder / f'cut.{fmt}'}"
    )
    result = ingest.upload_sync(
        folder, provider="novita", sim=sim_settings(store_dir=tmp_path / "s"), convert=True
    )
    [failure] = ingest.failures(journal_of(result))
    assert (result.done, result.failed, result.rejected) == (1, 1, 0)
    assert (predicted["reason"], predicted["code"]) == (failure.reason, failure.code)


def shard(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("manifest", ["folder", "shard"])
def test_a_runs_skipped_note_counts_a_shards_members_as_validate_does(
    tmp_path: Path, manifest: str
) -> None:
    """The run's note comes from the count ahead, whose walk counted a shard as images
    only: validate said 'skipped 3 non-image files (readme.txt, shard.tar#s/1.cls, …)',
    the run 'skipped 1 non-image file (readme.txt)', and nothing for a shard given alone."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "readme.txt").write_text("hi")
    (folder / "loose.png").write_bytes(PNG)
    members = [("s/1.png", PNG), ("s/1.cls", b"3"), ("s/1.txt", b"a cat"), ("s/2.npy", b"x")]
    tar = shard(folder / "shard.tar", [*members, ("s/3.png", PNG), ("s/3.json", b"{}")])
    path = folder if manifest == "folder" else tar
    walk = WalkStats()
    for _entry in read_manifest(path, walk=walk):
        pass
    ahead = SeekAhead(path).wait(30)
    assert ahead.skipped == walk.skipped
    expected = ["shard.tar#s/1.cls", "shard.tar#s/2.npy"]
    assert list(walk.skipped.examples) == ["readme.txt", *expected][-len(walk.skipped.examples) :]
    assert walk.skipped.files == (3 if manifest == "folder" else 2)
