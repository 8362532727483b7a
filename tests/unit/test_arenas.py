"""`ingest.arenas`: glibc's malloc arenas capped for the upload commands, the user's setting kept."""

from __future__ import annotations

import os

import pytest

from ingest import arenas


def test_on_glibc_the_arenas_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        glibc = ""
    assert arenas.limit() is glibc.startswith("glibc")


def test_the_users_own_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert arenas.limit() is False
