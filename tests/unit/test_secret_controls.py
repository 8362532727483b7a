"""A key holding a control character (a CR or line break inside it) is refused where it is read.

Sent as a header it would break the request's framing: aiohttp raised a
ValueError and the lean pool an `UnsafeRequest` while the session was made,
both a traceback (exit 1). It is a mistake in the environment, so a
`ConfigError` names the variable (never the value) before any request.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.config import load_settings, read_secrets
from ingest.errors import ConfigError


@pytest.mark.parametrize("value", ["sk-abc\rQZX", "sk-abc\nQZX", "sk-abc\x7fQZX"])
def test_a_key_with_a_control_character_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("NOVITA_API_KEY", value)
    with pytest.raises(ConfigError, match="NOVITA_API_KEY") as info:
        read_secrets("novita", load_settings().provider("novita"), ("api_key_env",))
    assert info.value.key == "providers.novita.api_key_env"
    assert "sk-abc" not in str(info.value) and "QZX" not in str(info.value)


def test_surrounding_whitespace_is_still_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOVITA_API_KEY", "  sk-abc\r\n")  # a key pasted from a Windows file
    assert read_secrets("novita", load_settings().provider("novita"), ("api_key_env",)) == {
        "api_key_env": "sk-abc"
    }


def test_a_sim_run_refuses_it_the_same_way(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--sim` takes the variable's value when it is set (the emulator accepts any key):
    the same check, not a traceback from the session (the reader's finding)."""
    from ingest.cli.main import main
    from tests.images import make_dataset, write_jsonl_manifest

    manifest = write_jsonl_manifest(make_dataset(tmp_path / "i", 1), tmp_path / "m.jsonl")
    monkeypatch.setenv("NOVITA_API_KEY", "sk-abc\rQZX")
    assert main(["run", str(manifest), "--provider", "novita", "--sim", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "NOVITA_API_KEY holds a control character" in err and "QZX" not in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
