"""Bad input: the corpus in `tests/corpus`, and what cannot live in git.

Each bad entry gets a clear message naming its line and the reason, and the
good entries of the same manifest still upload exactly once; a manifest or a
configuration that cannot be used at all fails before any work (no journal,
no request to the provider) with the problem, or the key, named.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from ingest.config import DEFAULT_PROVIDERS, load_settings
from ingest.engine import Engine, EngineSettings, ItemDone
from ingest.errors import ManifestError, TransferError
from ingest.http import Timeouts, api_session, storage_session
from ingest.item import Item, Source
from ingest.journal import Header, Journal
from ingest.manifest import read_manifest
from ingest.providers import PROVIDER_NAMES, provider_class
from ingest.providers.base import Target
from ingest.providers.context import Context
from ingest.providers.settings import ScenarioSettings
from ingest.sim import SimSettings, serve
from ingest.sniff import ImageType
from ingest.validate import Limits, check
from tests.images import Kind, image_bytes, make_image, write_jsonl_manifest
from tests.simproc import SimProcess, run_ingest, sha256_file, sim_process
from tests.torture import spec

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
NOVITA = spec("novita")
LIMIT_CONFIG = "[providers.novita]\nmax_size_mb = 0.01\n"  # large.png (24 KiB) is over it

# mixed.csv cannot carry comments: line -> what its message must say. Lines 2, 3, 11 upload
# (line 3 is a short row: its missing columns are left empty, so line 4 repeats its id).
CSV_EXPECTED = {
    4: "duplicate id 'good-6' (first at line 3)",
    5: "file not found",
    6: "duplicate id 'good-5' (first at line 2)",
    7: "not an image",
    8: "empty path",
    9: "not valid UTF-8 (byte e9",
    10: "is a directory",
    12: "bad CSV record",
}
CSV_GOOD = ("good-5.jpg", "good-6.webp", "good-1.png")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A copy of the corpus: runs write their journals beside the manifests."""
    return Path(shutil.copytree(CORPUS, tmp_path / "corpus"))


def expectations(manifest: Path) -> tuple[dict[int, str], list[Path]]:
    """(line -> expected reason) from `# expect:` comments, and the files of the other lines."""
    expected: dict[int, str] = {}
    good: list[Path] = []
    pending: str | None = None
    for number, raw in enumerate(manifest.read_bytes().splitlines(), start=1):
        text = raw.decode("utf-8", "replace").strip()
        if text.startswith("# expect:"):
            pending = text.removeprefix("# expect:").strip()
        elif text and not text.startswith("#"):
            if pending is not None:
                expected[number], pending = pending, None
            else:
                match = re.search(r"\.\./files/[^\"]+", text)
                assert match, text
                good.append(manifest.parent / match.group(0))
    return expected, good


def reported(stderr: str, line: int) -> str:
    found = [text for text in stderr.splitlines() if re.search(rf"\bline {line}\b", text)]
    assert len(found) == 1, f"line {line}: {found or 'not reported'}\n{stderr}"
    return found[0]


def landed_once(sim: SimProcess, good: list[Path]) -> None:
    copies = Counter(obj["sha256"] for obj in sim.objects())
    assert sorted(copies.values()) == [1] * len(good), copies
    assert set(copies) == {sha256_file(path) for path in good}


def run_corpus(manifest: Path, expected: dict[int, str], good: list[Path]) -> None:
    config = manifest.parent.parent / "ingest.toml"
    config.write_text(LIMIT_CONFIG)
    with sim_process() as sim:
        done = run_ingest(
            NOVITA.run_args(manifest, sim, "--plain", "--config", str(config)), env=NOVITA.env()
        )
        assert done.returncode == 1, done.stderr  # finished, with rejections
        assert "Traceback" not in done.stderr
        for line, reason in expected.items():
            text = reported(done.stderr, line)
            assert reason.lower() in text.lower(), f"line {line}: {text!r} lacks {reason!r}"
        landed_once(sim, good)
    status = run_ingest(["status", str(NOVITA.journal(manifest)), "--json"], env=NOVITA.env())
    info = json.loads(status.stdout)
    assert info["done"] == len(good) and info["rejected"] == len(expected)
    assert info["failed"] == info["in_flight"] == 0


@pytest.mark.parametrize("name", ["mixed.jsonl", "list.txt"])
def test_each_bad_line_is_named_and_the_good_ones_upload(corpus: Path, name: str) -> None:
    manifest = corpus / "manifests" / name
    expected, good = expectations(manifest)
    assert len(expected) >= 5
    run_corpus(manifest, expected, good)


def test_csv_bad_records_are_named_and_the_good_ones_upload(corpus: Path) -> None:
    good = [corpus / "files" / name for name in CSV_GOOD]
    run_corpus(corpus / "manifests" / "mixed.csv", CSV_EXPECTED, good)


UNUSABLE = {
    "array.jsonl": "this is a JSON array, but ingest reads JSON lines",
    "pretty.jsonl": "pretty-printed JSON",
    "utf16.jsonl": "UTF-16",
    "compressed.jsonl": "gzip-compressed data; decompress it first",
    "spreadsheet.csv": "a zip archive (a spreadsheet? export it as CSV)",
    "empty.csv": "empty CSV manifest",
    "no-path-column.csv": "no 'path' column in the CSV header (found 'file', 'caption')",
    "not-there.jsonl": "manifest not found",
}


def test_unusable_manifests_fail_before_any_work(corpus: Path) -> None:
    with sim_process() as sim:
        for name, reason in UNUSABLE.items():
            manifest = corpus / "manifests" / name
            done = run_ingest(NOVITA.run_args(manifest, sim, "--plain"), env=NOVITA.env())
            assert done.returncode == 2, (name, done.stderr)
            assert reason in done.stderr and str(manifest) in done.stderr, (name, done.stderr)
            assert "Traceback" not in done.stderr
            assert not NOVITA.journal(manifest).exists(), name
        assert sim.stats()["api_requests"] == {}


CONFIGS: list[tuple[str, str | None, dict[str, str], str]] = [
    ("unknown key", "[run]\nput_concurency = 8\n", {}, "run.put_concurency: unknown key"),
    (
        "wrong type",
        '[run]\nput_concurrency = "eight"\n',
        {},
        "run.put_concurrency: expected an integer",
    ),
    (
        "wrong type (bool)",
        "[run]\nallow_insecure_http = 1\n",
        {},
        "run.allow_insecure_http: expected true or false",
    ),
    ("out of range", "[run]\napi_concurrency = 0\n", {}, "run.api_concurrency: must be at least 1"),
    ("negative", "[run]\nread_timeout_s = -1\n", {}, "run.read_timeout_s: must not be negative"),
    ("unknown section", "[runn]\nput_concurrency = 8\n", {}, "runn: unknown section"),
    (
        "unknown provider",
        "[providers.novitaa]\nbase_url = 'x'\n",
        {},
        "providers.novitaa: unknown provider",
    ),
    (
        "provider key",
        "[providers.novita]\napi_key = 'sk-in-the-file'\n",
        {},
        "providers.novita.api_key: unknown key",
    ),
    ("invalid TOML", "[run\nput_concurrency = 8\n", {}, "invalid TOML"),
    (
        "missing key variable",
        None,
        {"NOVITA_API_KEY": ""},
        "providers.novita.api_key_env: environment variable NOVITA_API_KEY",
    ),
    (
        "renamed key variable",
        "[providers.novita]\napi_key_env = 'MY_NOVITA_KEY'\n",
        {},
        "environment variable MY_NOVITA_KEY is empty or not set",
    ),
]


def test_bad_configuration_fails_before_any_work_naming_the_key(corpus: Path) -> None:
    manifest = corpus / "manifests" / "mixed.jsonl"
    config = corpus / "bad.toml"
    with sim_process() as sim:
        for what, text, env, reason in CONFIGS:
            flags = ["--plain"]
            if text is not None:
                config.write_text(text)
                flags += ["--config", str(config)]
            done = run_ingest(NOVITA.run_args(manifest, sim, *flags), env=NOVITA.env(**env))
            assert done.returncode == 2, (what, done.stderr)
            assert reason in done.stderr, (what, done.stderr)
            assert "Traceback" not in done.stderr
            assert "sk-in-the-file" not in done.stderr
            assert not NOVITA.journal(manifest).exists(), what
        assert sim.stats()["api_requests"] == {}


def test_a_folder_with_names_that_are_not_utf8_and_unreadable_files(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    good = []
    kinds: tuple[Kind, ...] = ("png", "jpeg", "webp")
    for index, kind in enumerate(kinds):
        path = folder / f"ok-{index}.{kind}"
        make_image(path, kind, 2000 + index, seed=120 + index)
        good.append(path)
    bad_name = os.fsdecode(b"caf\xe9-latin1.png")
    make_image(folder / bad_name, "png", 2100, seed=130)
    bad_dir = folder / os.fsdecode(b"dossier-\xe9t\xe9")
    bad_dir.mkdir()
    make_image(bad_dir / "inside.png", "png", 2200, seed=131)
    locked = folder / "locked.png"
    make_image(locked, "png", 2300, seed=132)
    locked.chmod(0)
    as_root = os.geteuid() == 0  # root reads a mode-000 file: checked in-process below
    if as_root:
        good.append(locked)
    with sim_process() as sim:
        done = run_ingest(NOVITA.run_args(folder, sim, "--plain"), env=NOVITA.env())
        assert done.returncode == 1, done.stderr
        landed_once(sim, good)
    assert r"file name is not valid UTF-8: caf\xe9-latin1.png" in done.stderr
    assert r"directory name is not valid UTF-8: dossier-\xe9t\xe9/" in done.stderr
    if not as_root:
        assert f"permission denied: {locked}" in done.stderr


def test_an_unreadable_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself, with the open refused (root can read a mode-000 file)."""
    path = tmp_path / "locked.png"
    make_image(path, "png", 1000, seed=140)
    real_open = os.open

    def refuse(
        name: str | bytes | os.PathLike[str] | os.PathLike[bytes],
        flags: int,
        mode: int = 0o777,
        *,
        dir_fd: int | None = None,
    ) -> int:
        if os.fspath(name) == os.fspath(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(name, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", refuse)
    result = check(Item(key="k", path=path, line=7), Limits(frozenset(), None))
    monkeypatch.undo()
    assert isinstance(result, ManifestError)
    assert str(result) == f"{path}:7: permission denied: {path}"


@pytest.mark.anyio
async def test_files_over_each_providers_limit_are_named(tmp_path: Path) -> None:
    """Sparse files one byte over each provider's limit (its own, or a configured one)."""
    timeouts = Timeouts(connect=1, read=1)
    async with (
        api_session("http://127.0.0.1:9/", {}, timeouts, 4) as api,
        storage_session(timeouts, 4) as storage,
    ):
        for name in PROVIDER_NAMES:
            settings = DEFAULT_PROVIDERS[name]
            if settings.max_size is None:
                settings = dataclasses.replace(settings, max_size_mb=1.0)
            if isinstance(settings, ScenarioSettings):
                settings = dataclasses.replace(settings, model_id="model_x")
            caps = provider_class(name)(Context(api=api, storage=storage, settings=settings)).caps
            assert caps.max_size is not None, name
            image_type = sorted(caps.formats, key=lambda t: t.ext)[0]
            kinds: dict[str, Kind] = {"png": "png", "jpeg": "jpeg", "webp": "webp"}
            kind = kinds.get(image_type.ext, "png")
            limits = Limits(caps.formats, caps.max_size, provider=name)
            for size, fits in ((caps.max_size, True), (caps.max_size + 1, False)):
                path = tmp_path / f"{name}-{size}.{kind}"
                with path.open("wb") as fh:
                    fh.write(image_bytes(kind, 256, seed=150))
                    fh.truncate(size)  # sparse: no disk used for the rest
                result = check(Item(key=path.name, path=path, line=3), limits)
                if fits:
                    assert isinstance(result, Source), (name, result)
                else:
                    assert isinstance(result, ManifestError), name
                    assert "too large" in result.reason and f"over {name}'s" in result.reason
                    assert result.line == 3
                path.unlink()


class _Failures:
    def __init__(self) -> None:
        self.failed: dict[str, TransferError] = {}

    def item_done(self, done: ItemDone) -> None:
        pass

    def item_failed(self, key: str, line: int, err: TransferError) -> None:
        self.failed[key] = err

    def item_rejected(self, key: str | None, err: ManifestError) -> None:
        raise AssertionError(err)

    def item_changed(self, key: str, line: int) -> None:
        raise AssertionError(key)


CHANGES = {
    "vanished": ("unreadable", "No such file or directory"),
    "shrank": ("file_changed", "file changed size since it was checked"),
    "grew": ("file_changed", "file changed size since it was checked"),
}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("size", "read_ahead"),
    [(4_000, 0), (700_000, 16 << 20), (4_000, 16 << 20)],
    ids=["whole", "streamed", "read-ahead"],
)
async def test_files_that_change_or_vanish_after_validation_fail_alone(
    tmp_path: Path, size: int, read_ahead: int
) -> None:
    """Between the check and the upload (here: while the URL is acquired) the file changes.

    A small file read ahead at validation is uploaded as it was read, which is
    what the journal's fingerprint describes; the others fail alone.
    """
    paths = []
    for index in range(5):
        path = tmp_path / f"f{index}.png"
        make_image(path, "png", size + index, seed=160 + index)
        paths.append(path)
    manifest = write_jsonl_manifest(paths, tmp_path / "m.jsonl")
    as_validated = {sha256_file(path) for path in paths}
    victims = dict(zip(("item-000001", "item-000002", "item-000003"), CHANGES, strict=True))
    settings = load_settings(None)
    run = dataclasses.replace(settings.run, max_attempts=3, backoff_base_s=0.01, retry_window_s=0)
    observer = _Failures()
    async with serve(SimSettings()) as sim:
        timeouts = Timeouts(connect=5, read=10)
        async with (
            api_session(sim.base_url + "/", {"Authorization": "Bearer k"}, timeouts, 4) as api,
            storage_session(timeouts, 4) as storage,
        ):
            psettings = dataclasses.replace(settings.provider("novita"), base_url=sim.base_url)
            provider = provider_class("novita")(
                Context(api=api, storage=storage, settings=psettings)
            )
            acquire = provider.acquire

            async def acquire_then_change(source: Source) -> Target:
                target = await acquire(source)
                change = victims.get(source.item.key)
                path = source.item.path
                if change == "vanished":
                    path.unlink()
                elif change == "shrank":
                    os.truncate(path, size // 2)
                elif change == "grew":
                    with path.open("ab") as fh:
                        fh.write(b"more")
                return target

            provider.acquire = acquire_then_change  # type: ignore[method-assign]
            journal, state = Journal.open(tmp_path / "j", Header("novita", str(manifest)))
            with journal:
                engine_settings = dataclasses.replace(
                    EngineSettings(run), read_ahead_bytes=read_ahead
                )
                engine = Engine(provider, journal, state, engine_settings, observer=observer)
                outcome = await engine.run(read_manifest(manifest))
        stored = {obj.sha256 for obj in sim.state.objects.values()}
    assert outcome.stop_reason is None
    if read_ahead and size <= 256 << 10:
        assert outcome.counters.done == 5 and not observer.failed
        assert stored == as_validated  # whatever happened to the files since
        return
    assert outcome.counters.done == 2 and outcome.counters.failed == 3
    assert outcome.counters.retries == 0  # a local problem is not retried
    assert set(observer.failed) == set(victims)
    for key, change in victims.items():
        err = observer.failed[key]
        code, words = CHANGES[change]
        assert err.code == code and words in err.message, (change, err)
        assert err.action.value == "fail_item"
    assert stored == {sha256_file(paths[0]), sha256_file(paths[4])}  # nothing partial landed


@pytest.mark.anyio
async def test_a_file_that_grows_while_it_streams_is_cut_before_its_last_chunk(
    tmp_path: Path,
) -> None:
    from ingest import storage

    path = tmp_path / "growing.png"
    size = storage.CHUNK * 2 + 10
    path.write_bytes(image_bytes("png", size, seed=170))
    chunks = storage._stream(path, size, whole=True)
    first = await chunks.__anext__()
    with path.open("ab") as fh:
        fh.write(b"late bytes")
    sent = [first]

    async def drain() -> None:
        async for chunk in chunks:
            sent.append(chunk)

    with pytest.raises(storage.FileChanged, match="grew"):
        await drain()
    assert sum(map(len, sent)) < size  # the last chunk never went out: storage sees a cut body


@pytest.mark.anyio
async def test_a_file_problem_mid_send_fails_the_item_not_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp reports a body that failed mid-send as a connection error; it is a local one."""
    from ingest import storage

    path = tmp_path / "big.png"
    size = storage.SMALL_FILE + 1000
    path.write_bytes(image_bytes("png", size, seed=171))

    async def failing(path: Path, size: int, offset: int = 0, *, whole: bool = False) -> object:
        yield b"\x89PNG" + bytes(1000)
        raise storage.FileChanged("file shrank during upload: 1004 of 263144 bytes")

    monkeypatch.setattr(storage, "_stream", failing)
    async with serve(SimSettings()) as sim:
        timeouts = Timeouts(connect=5, read=5)
        psettings = dataclasses.replace(DEFAULT_PROVIDERS["novita"], base_url=sim.base_url)
        async with (
            api_session(sim.base_url + "/", {"Authorization": "Bearer k"}, timeouts, 2) as api,
            storage_session(timeouts, 2) as session,
        ):
            provider = provider_class("novita")(
                Context(api=api, storage=session, settings=psettings)
            )
            item = Item(key="k", path=path, line=1)
            source = Source(item, size, path.stat().st_mtime_ns, ImageType.PNG)
            target = await provider.acquire(source)
            with pytest.raises(TransferError) as failed:
                await provider.transfer(source, target)
        assert sim.state.objects == {}
    assert failed.value.code == "file_changed" and failed.value.action.value == "fail_item"
    assert "file shrank during upload" in failed.value.message
