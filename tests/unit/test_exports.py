"""The public names of `ingest`: a small sorted `__all__`, all importable, cheap to import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import ingest


def test_all_is_sorted_public_and_importable() -> None:
    names = ingest.__all__
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for name in names:
        assert not name.startswith("_") or (name.startswith("__") and name.endswith("__")), name
        assert getattr(ingest, name) is not None, name
    assert set(names) <= set(dir(ingest))


def test_the_headline_names_are_there() -> None:
    headline: tuple[str, ...] = ("upload", "upload_sync", "open_upload", "Result", "StopReason")
    # An observer and what it receives (the README's example imported private modules).
    headline += ("Observer", "ItemDone", "Landed")
    for name in (*headline, "status", "export"):
        assert name in ingest.__all__
    assert ingest.open_upload.__module__ == "ingest.api.handle"
    assert ingest.StopReason.INTERRUPTED.value == "interrupted"
    assert issubclass(ingest.ConfigError, ingest.IngestError)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="nonesuch"):
        getattr(ingest, "nonesuch")  # noqa: B009


def _modules_after(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; {code}; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.split())


def test_importing_ingest_is_cheap() -> None:
    loaded = _modules_after("import ingest")
    assert not {"aiohttp", "asyncio", "anyio", "ingest.api"} & loaded
    # Reaching for the front door does not open the network stack either.
    loaded = _modules_after("import ingest; ingest.upload; ingest.Result")
    assert "ingest.api" in loaded
    assert "aiohttp" not in loaded
