"""`ingest.loop`: uvloop when it imports, asyncio's loop when it does not."""

from __future__ import annotations

import sys
import types

import pytest

from ingest.loop import backend_options


def test_uvloop_is_used_when_it_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", types.ModuleType("uvloop"))
    assert backend_options() == {"use_uvloop": True}


def test_asyncio_loop_when_uvloop_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` raise ImportError
    assert backend_options() == {}
