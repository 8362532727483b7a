"""Images waiting for their conversion do not hold the upload workers (`ingest/engine/lane.py`).

Found on a quiet machine: with 30 % of a mixed folder to convert, the
JPEG/PNG uploads went at the converters' pace (184 → 74 files/s), because
each conversion ran inside an upload worker and held it while it waited
for a converter thread. Here every conversion is held until the PNGs behind
them are done: with the lane they are; on the old code the conversions
(more than the run's 1 + 1 workers) held every worker, and the PNGs waited.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import ingest
from ingest.api.wiring import sim_settings
from ingest.convert import Converter
from ingest.item import Source
from tests.unit.test_convert import picture, save

CONVERTS, KEPT = 6, 6
HELD_S = 60.0  # only the old code's failure waits this long


class PngsDone(ingest.Observer):
    def __init__(self) -> None:
        self.left = KEPT
        self.event = threading.Event()

    def item_done(self, done: ingest.ItemDone) -> None:
        if done.key.endswith(".png"):
            self.left -= 1
            if self.left == 0:
                self.event.set()


def test_the_kept_images_upload_while_the_conversions_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for n in range(CONVERTS):  # sorted first: the reader meets them before the PNGs
        save(folder / f"a{n}.bmp", picture(seed=n), "BMP")
    for n in range(KEPT):
        save(folder / f"b{n}.png", picture(seed=10 + n), "PNG")
    observer = PngsDone()
    released: list[bool] = []
    convert = Converter._convert

    def held(self: Converter, source: Source) -> Source:
        released.append(observer.event.wait(HELD_S))  # True: the PNGs were done first
        return convert(self, source)

    monkeypatch.setattr(Converter, "_convert", held)
    result = ingest.upload_sync(
        folder,
        provider="novita",
        sim=sim_settings(store_dir=tmp_path / "store"),
        convert=True,
        convert_workers=1,
        put_concurrency=1,
        lookahead=1,
        observer=observer,
    )
    assert result.complete and result.done == CONVERTS + KEPT
    assert released == [True] * CONVERTS
