"""Settings: defaults, TOML, overrides, errors that name the key, secrets from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.config import load_settings, read_secrets
from ingest.errors import ConfigError
from ingest.redact import redact

ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    s = load_settings()
    assert s.run.put_concurrency == 32
    assert s.provider("novita").api_key_env == "NOVITA_API_KEY"


def test_example_config_is_valid_and_complete() -> None:
    s = load_settings(ROOT / "config.example.toml")
    assert s == load_settings()  # the example documents the defaults


def test_file_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[run]\nput_concurrency = 8\napi_rate = 5\n[providers.novita]\nbase_url = "http://127.0.0.1:1"\n'
    )
    s = load_settings(cfg, run_overrides={"put_concurrency": 4})
    assert s.run.put_concurrency == 4
    assert s.run.api_rate == 5.0
    assert s.provider("novita").base_url == "http://127.0.0.1:1"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[run]\nput_concurency = 8\n", "run.put_concurency"),
        ("[run]\nput_concurrency = '8'\n", "run.put_concurrency"),
        ("[run]\nput_concurrency = 0\n", "run.put_concurrency"),
        ("[run]\nallow_insecure_http = 1\n", "run.allow_insecure_http"),
        ("[runn]\n", "runn"),
        ("[providers.nope]\n", "providers.nope"),
        ("[providers.novita]\napi_key = 'sk-123'\n", "providers.novita.api_key"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert info.value.key == key
    assert key in str(info.value)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[run\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(cfg)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")


def test_missing_key_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOVITA_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="NOVITA_API_KEY") as info:
        read_secrets("novita", load_settings().provider("novita"), ("api_key_env",))
    assert info.value.key == "providers.novita.api_key_env"


def test_secret_read_is_redacted_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOVITA_API_KEY", "sk-sentinel-0123456789")
    secrets = read_secrets("novita", load_settings().provider("novita"), ("api_key_env",))
    assert secrets == {"api_key_env": "sk-sentinel-0123456789"}
    assert "sk-sentinel" not in redact("Bearer sk-sentinel-0123456789 failed")


def test_signed_query_values_are_redacted() -> None:
    url = "http://h/k?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=" + "a" * 64 + "&x-id=PutObject"
    out = redact(url)
    assert "a" * 64 not in out and "AKIA" not in out
    assert "x-id=PutObject" in out
