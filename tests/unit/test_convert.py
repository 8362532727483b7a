"""Opt-in conversion (issue 15 part 4): `--convert` makes HEIC, TIFF, BMP... into PNG (alpha) or
JPEG, upright and within `--max-side`, uploads that through the in-process emulator, journals the
original's fingerprint and the converted bytes' digest, and resumes without a second copy."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import anyio
import orjson
import pytest
from PIL import Image

import ingest
from ingest.api.wiring import sim_settings
from ingest.capabilities import Capabilities
from ingest.convert import Converter, accepting
from ingest.errors import ManifestError, TransferError
from ingest.item import Item, Source
from ingest.sniff import ImageType, sniff
from ingest.validate import Checker
from tests.results import journal_of

pillow_heif = pytest.importorskip("pillow_heif")  # the convert extra, in dev: CI has it
pillow_heif.register_heif_opener()
NOVITA = frozenset({ImageType.PNG, ImageType.JPEG, ImageType.WEBP})


def picture(size: tuple[int, int] = (48, 32), mode: str = "RGB", seed: int = 0) -> Image.Image:
    gray = Image.effect_mandelbrot(size, (-2 + seed * 0.05, -1.5, 1, 1.5), 40)
    return gray.convert(mode)


def save(path: Path, im: Image.Image, fmt: str, **kw: object) -> Path:
    im.save(path, fmt, **kw)
    return path


def source_of(path: Path) -> Source:
    caps = Capabilities(formats=NOVITA, max_size=None, url_lifetime_s=None)
    checked = Checker(accepting(caps), "novita")(Item(key=path.name, path=path, line=1))
    assert isinstance(checked, Source), checked
    return checked


def convert(path: Path, **kw: int) -> tuple[Source, Image.Image, bytes]:
    converter = Converter(NOVITA, provider="novita", **kw)
    try:
        out = anyio.run(converter.convert, source_of(path))
        data = out.item.path.read_bytes()
    finally:
        converter.close()
    assert len(data) == out.size and sniff(data) is out.image_type
    return out, Image.open(io.BytesIO(data)), data


def test_heic_becomes_jpeg_and_alpha_becomes_png_keeping_the_originals_fingerprint(
    tmp_path: Path,
) -> None:
    heic = save(tmp_path / "phone.heic", picture(), "HEIF")
    out, im, data = convert(heic)
    assert out.image_type is ImageType.JPEG and im.size == (48, 32)
    assert out.item.key == "phone.heic" and out.item.display_name == "phone.jpg"
    assert out.converted is not None and out.converted.original is ImageType.HEIC
    assert out.file_size == heic.stat().st_size == out.converted.size  # the journal's fingerprint
    assert out.converted.digest == hashlib.sha256(data).hexdigest()
    again, _, _ = convert(heic)
    assert again.converted is not None and again.converted.digest == out.converted.digest
    clear = save(tmp_path / "clear.tiff", picture(mode="RGBA"), "TIFF")
    out, im, _ = convert(clear)
    assert out.image_type is ImageType.PNG and im.mode == "RGBA"


def test_two_items_converted_to_the_same_bytes_keep_a_spool_file_each(tmp_path: Path) -> None:
    first = save(tmp_path / "a.tiff", picture(), "TIFF")
    second = save(tmp_path / "b.bmp", picture(), "BMP")
    converter = Converter(NOVITA, provider="novita")

    async def both() -> tuple[Source, Source]:
        return await converter.convert(source_of(first)), await converter.convert(source_of(second))

    try:
        a, b = anyio.run(both)
        assert a.converted is not None and b.converted is not None
        assert a.converted.digest == b.converted.digest and converter.spooled == 2
        converter.forget("a.tiff")  # journaled done: its file goes, the other's stays
        assert not a.item.path.exists() and b.item.path.read_bytes()
    finally:
        converter.close()


def test_exif_orientation_is_applied_and_max_side_downscales(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to show upright
    tiff = save(tmp_path / "scan.tiff", picture((60, 20)), "TIFF", exif=exif)
    _, im, _ = convert(tiff)
    assert im.size == (20, 60)
    bmp = save(tmp_path / "big.bmp", picture((400, 100)), "BMP")
    _, im, _ = convert(bmp, max_side=100)
    assert im.size == (100, 25)


def test_a_corrupt_heic_and_an_image_over_the_memory_budget_are_named_problems(
    tmp_path: Path,
) -> None:
    good = save(tmp_path / "good.heic", picture(), "HEIF").read_bytes()
    bad = tmp_path / "bad.heic"
    bad.write_bytes(good[:80])
    with pytest.raises(TransferError) as raised:
        convert(bad)
    err = raised.value
    assert (err.code, err.action.value) == ("convert_failed", "fail_item")
    assert err.message.startswith("cannot convert heic: ") and err.message.endswith(str(bad))
    big = save(tmp_path / "big.bmp", picture((600, 600)), "BMP")
    with pytest.raises(TransferError, match=r"600x600 pixels need about 4 MiB.*convert_memory"):
        convert(big, memory_bytes=1 << 20)


def mixed_folder(root: Path) -> Path:
    root.mkdir()
    save(root / "a.heic", picture(seed=1), "HEIF")
    save(root / "b.tiff", picture(seed=2), "TIFF")
    save(root / "c.bmp", picture(seed=2), "BMP")  # b.tiff's picture: the same converted bytes
    save(root / "d.tiff", picture(mode="RGBA", seed=4), "TIFF")
    save(root / "e.png", picture(seed=5), "PNG")
    return root


def journal_lines(result: ingest.Result) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in journal_of(result).read_bytes().splitlines()[1:]]


def stored(store: Path) -> list[bytes]:
    return [p.read_bytes() for p in store.rglob("*") if p.is_file()]


def test_without_convert_the_rejection_names_the_flag(tmp_path: Path) -> None:
    folder = mixed_folder(tmp_path / "imgs")
    settings = sim_settings(store_dir=tmp_path / "store")
    result = ingest.upload_sync(folder, provider="novita", sim=settings)
    assert (result.done, result.rejected) == (1, 4)
    reasons = [r["e"] for r in journal_lines(result) if r["s"] == "bad"]
    assert all("--convert converts it" in str(reason) for reason in reasons)


class StopAfter(ingest.Observer):
    def __init__(self, n: int) -> None:
        self.left = n

    def item_done(self, done: ingest.ItemDone) -> None:
        self.left -= 1
        if self.left == 0:
            raise RuntimeError("stop here")


def test_novita_gets_converted_bytes_once_and_a_resume_converts_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    folder = mixed_folder(tmp_path / "imgs")
    store = tmp_path / "store"
    settings = sim_settings(store_dir=store)

    def run(observer: ingest.Observer | None = None) -> ingest.Result:
        return ingest.upload_sync(
            folder,
            provider="novita",
            sim=settings,
            convert=True,
            put_concurrency=1,
            observer=observer,
        )

    with pytest.raises(RuntimeError, match="stop here"):
        run(StopAfter(2))
    result = run()
    assert result.complete and result.done == 5
    bodies = stored(store)
    assert len(bodies) == 5  # no second copy (b and c converted alike: one spool file each)
    assert Counter(sniff(b) for b in bodies) == {ImageType.JPEG: 3, ImageType.PNG: 2}
    assert len({hashlib.sha256(b).hexdigest() for b in bodies}) == 4
    done = {r["k"]: r for r in journal_lines(result) if r["s"] == "done"}
    digests = {hashlib.sha256(b).hexdigest() for b in bodies}
    for key in ("a.heic", "b.tiff", "c.bmp", "d.tiff"):
        kind, digest = str(done[key]["cv"]).split(" sha256:")
        assert kind == Path(key).suffix[1:] and digest in digests
        assert done[key]["z"] == (folder / key).stat().st_size  # the original's fingerprint
    assert "cv" not in done["e.png"]
    again = run()
    assert again.this_run.skipped == 5 and again.this_run.done == 0 and len(stored(store)) == 5
    assert not list(spool.iterdir())  # each run's spool folder went with it


def test_scenario_takes_a_converted_bmp(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    save(folder / "scan.bmp", picture(), "BMP")
    save(folder / "photo.heic", picture(seed=2), "HEIF")  # Scenario takes HEIC: kept
    settings = sim_settings(store_dir=tmp_path / "store")
    result = ingest.upload_sync(
        folder, provider="scenario", sim=settings, model_id="model_cv", convert=True
    )
    assert result.complete and result.done == 2
    done = {r["k"]: r for r in journal_lines(result) if r["s"] == "done"}
    assert str(done["scan.bmp"]["cv"]).startswith("bmp sha256:") and "cv" not in done["photo.heic"]


def test_an_avif_whose_major_brand_is_mif1_converts(tmp_path: Path) -> None:
    # pillow-heif claims every HEIF brand and has no AV1 decoder: such an AVIF failed with
    # "Support for this compression format has not been built in: AV1".
    from tests.unit.test_sim_magic import avif_major_mif1

    path = tmp_path / "a.avif"
    path.write_bytes(avif_major_mif1())
    out, im, _ = convert(path)
    assert out.converted is not None and out.converted.original is ImageType.AVIF
    assert out.image_type is ImageType.JPEG and im.size[0] > 0


def test_the_size_limit_applies_to_the_converted_bytes_not_the_original(tmp_path: Path) -> None:
    noisy = Image.effect_noise((160, 160), 64).convert("RGB")
    bmp = save(tmp_path / "scan.bmp", picture((200, 200)), "BMP")  # 120 KB, ~6 KB as JPEG
    png = save(tmp_path / "kept.png", noisy, "PNG")  # ~50 KB of noise, uploaded as it is
    noise = save(tmp_path / "noise.tiff", noisy, "TIFF")  # ~77 KB, ~20 KB as JPEG at 100
    limit = 40_000
    caps = Capabilities(formats=NOVITA, max_size=limit, url_lifetime_s=None)
    checker = Checker(accepting(caps), "novita")
    assert bmp.stat().st_size > limit and png.stat().st_size > limit
    over = checker(Item(key="kept.png", path=png, line=2))
    assert isinstance(over, ManifestError) and over.reason.startswith("too large: ")
    checked = checker(Item(key="scan.bmp", path=bmp, line=1))
    assert isinstance(checked, Source), checked  # converted first: its size is checked then
    converter = Converter(NOVITA, provider="novita", max_size=limit, quality=100)
    try:
        out = anyio.run(converter.convert, checked)
        assert out.image_type is ImageType.JPEG and out.size < limit < checked.size
        tight = Converter(NOVITA, provider="novita", max_size=8_000, quality=100)
        try:
            noisy_source = checker(Item(key="noise.tiff", path=noise, line=3))
            assert isinstance(noisy_source, Source)
            with pytest.raises(TransferError) as raised:
                anyio.run(tight.convert, noisy_source)
        finally:
            tight.close()
    finally:
        converter.close()
    size = noise.stat().st_size
    assert re.fullmatch(
        rf"cannot convert tiff: converted jpeg is [\d,]+ bytes \(from {size:,} bytes of "
        rf"tiff\), over novita's 8,000-byte limit \(try --max-side\): {re.escape(str(noise))}",
        raised.value.message,
    )


def test_validate_each_says_the_size_after_conversion_is_not_known_yet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ingest.cli.main import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    save(folder / "scan.bmp", picture((200, 200)), "BMP")
    save(folder / "e.png", picture(seed=5), "PNG")
    argv = ["validate", str(folder), "--provider", "novita", "--convert", "--each"]
    assert main([*argv, "--max-size-mb", "0.05"]) == 0  # 117 KiB of BMP, under 0.05 MiB as JPEG
    out = capsys.readouterr().out.splitlines()
    assert out[1] == (
        "scan.bmp: converted from bmp to jpeg, 117.2 KiB before conversion "
        "(size after conversion unknown until converted), no caption"
    )
    assert out[0].startswith("e.png: kept: png, ")


def test_with_convert_a_fetched_file_kept_as_it_is_must_be_within_the_limit(
    tmp_path: Path,
) -> None:
    from ingest.clock import FakeClock
    from ingest.config import RunSettings
    from ingest.engine import EngineSettings
    from ingest.preparing import Preparer
    from ingest.validate import too_large

    caps = Capabilities(formats=NOVITA, max_size=1_000, url_lifetime_s=None)
    preparer = Preparer(caps, "novita", EngineSettings(RunSettings(convert=True)), FakeClock())
    try:
        png = save(tmp_path / "fetched.png", picture((64, 64)), "PNG")
        url = "https://cdn.example/a.png"
        item = Item(key=url, path=png, line=1, url=url)
        fetched = Source(item=item, size=png.stat().st_size, mtime_ns=0, image_type=ImageType.PNG)
        assert fetched.size > 1_000
        with pytest.raises(TransferError) as raised:
            preparer._within_limit(fetched)  # the fetcher had no limit: it might convert
        # The one sentence a local file over the limit gets too (`validate.too_large`).
        assert raised.value.message == f"{too_large(fetched.size, 1_000, 'novita')}: {url}"
        small = dataclasses.replace(fetched, size=900)
        preparer._within_limit(small)
    finally:
        anyio.run(preparer.aclose)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_cut_short_finds_a_heif_cut_in_its_image_data_and_nothing_in_a_whole_one(
    fmt: str,
) -> None:
    pytest.importorskip("pillow_heif")
    from pillow_heif import register_heif_opener

    from ingest.convert_child import cut_short

    register_heif_opener()
    out = io.BytesIO()
    picture((64, 48)).save(out, fmt)
    whole, ext = out.getvalue(), {"HEIF": "heic"}.get(fmt, "avif")
    assert cut_short(whole, ext) is None and cut_short(whole[:-3], "tiff") is None
    assert cut_short(whole[:-3], ext) == (
        f"damaged or truncated: its image data ends at byte {len(whole):,}, "
        f"the file at {len(whole) - 3:,}"
    )
    assert cut_short(b"\x00\x00\x00\x10meta" + bytes(40), ext) is None  # no iloc: the decoder's


def test_cut_short_reads_a_big_endian_tiffs_strips_and_leaves_what_it_cannot_follow() -> None:
    import struct

    from ingest.convert_child import cut_short

    def tiff(offsets: list[int], counts: list[int], kind: int = 4) -> bytes:
        # A big-endian header, then an IFD of two entries (LONG arrays past it, or inline).
        n, size = len(offsets), 2 if kind == 3 else 4
        code = "H" if kind == 3 else "I"
        arrays = 8 + 2 + 24 + 4
        inline = n * size <= 4
        entries = b""
        for i, (tag, values) in enumerate(((273, offsets), (279, counts))):
            packed = struct.pack(f">{n}{code}", *values)
            field = packed.ljust(4, b"\0") if inline else struct.pack(">I", arrays + i * n * size)
            entries += struct.pack(">HHI", tag, kind, n) + field
        extra = (
            b"" if inline else b"".join(struct.pack(f">{n}{code}", *v) for v in (offsets, counts))
        )
        return b"MM\0*" + struct.pack(">I", 8) + struct.pack(">H", 2) + entries + bytes(4) + extra

    head = tiff([100, 300], [200, 150])  # the strips end at 450
    assert cut_short(head.ljust(450, b"\0"), "tiff") is None
    assert cut_short(head.ljust(449, b"\0"), "tiff") == (
        "damaged or truncated: its image data ends at byte 450, the file at 449"
    )
    short = tiff([60], [40], kind=3)  # one SHORT strip, its values inline
    assert cut_short(short.ljust(99, b"\0"), "tiff") is not None
    assert cut_short(short.ljust(100, b"\0"), "tiff") is None
    assert cut_short(b"II+\0" + bytes(20), "tiff") is None  # a BigTIFF: the decoder's
    rle = b"BM" + bytes(8) + struct.pack("<II", 54, 40) + struct.pack("<iiHHI", 64, 64, 1, 8, 1)
    assert cut_short(rle + bytes(10), "bmp") is None  # RLE8: its decoder decides


def test_pillows_warnings_about_an_image_reach_neither_stderr_nor_the_reason(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # Newcomer16: `validate --convert` printed Pillow's "TiffImagePlugin.py:982: UserWarning:
    # Corrupt EXIF data…" and its `warnings.warn` line to stderr, naming no file.
    bad = tmp_path / "corrupt.tiff"
    bad.write_bytes(b"II*\x00" + (10**6).to_bytes(4, "little") + bytes(200))  # IFD past the end
    converter = Converter(NOVITA, provider="novita")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            planned = converter.plan(source_of(bad))  # validate's header read, in this process
            with pytest.raises(TransferError) as raised:  # the run's, in a converter process
                anyio.run(converter.convert, source_of(bad))
    finally:
        converter.close()
    assert [str(w.message) for w in caught] == []
    assert planned == raised.value.message  # as validate predicts it
    assert (
        planned == f"cannot convert tiff: damaged or truncated: its decoder cannot read it: {bad}"
    )
    assert capfd.readouterr().err == ""
