"""A caller's mistake is one `ConfigError` naming the argument (exit 2 from the CLI).

A new user found tracebacks instead: `ingest.upload(..., sim="yes")` an
AttributeError, `source=42`, `journal=5` or `config={...}` a pathlib
TypeError naming no argument, `upload_sync("m", "novita")` a TypeError naming
the internal `open_upload()`, `base_url="notaurl"` a yarl ValueError, and
`--base-url ftp://…` was accepted and spent the circuit breaker; `api_key=`
(or `api_key = "…"` at the top of the config file) got no word about the
environment variable the key belongs in. The checks live in
`ingest.api.arguments` and the URL rule in `ingest.urls`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import ingest
from ingest.cli.main import main
from ingest.config import load_settings
from ingest.errors import ConfigError
from ingest.urls import base_url_problem

SECRET = "sk-live-abcdef123456"


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a", "path": "a.png"}\n')
    return path


@pytest.mark.parametrize(
    ("arguments", "key", "says"),
    [
        ({"sim": "yes"}, "sim", "expected True, False or an ingest.sim.SimSettings, got str 'yes'"),
        ({"sim": True, "base_url": "notaurl"}, "providers.novita.base_url", "absolute http://"),
        ({"journal": 5}, "journal", "expected a path"),
        ({"config": {"run": {}}}, "config", "pass settings as keywords"),
        ({"sim": True, "force": "yes"}, "force", "expected True or False"),
        ({"sim": True, "observer": print}, "observer", "subclass ingest.Observer"),
        ({"api_key": SECRET}, "api_key", "environment variable that api_key_env names"),
    ],
)
def test_a_bad_argument_is_a_config_error_naming_it(
    manifest: Path, tmp_path: Path, arguments: dict[str, Any], key: str, says: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        ingest.upload_sync(manifest, provider="novita", **arguments)
    assert raised.value.key == key
    assert says in str(raised.value)
    assert SECRET not in str(raised.value)
    assert not list(tmp_path.glob("*.journal*"))  # refused before anything was opened


def test_a_source_that_is_no_path_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^source: expected a path .*got int 42"):
        ingest.upload_sync(42, provider="novita", sim=True)  # type: ignore[arg-type]


def test_an_api_key_argument_names_its_variable() -> None:
    with pytest.raises(ConfigError, match="now NOVITA_API_KEY"):
        ingest.upload_sync("m.jsonl", provider="novita", api_key=SECRET)
    with pytest.raises(ConfigError, match=r"api_secret_env names \(now SCENARIO_API_SECRET\)"):
        ingest.upload_sync("m.jsonl", provider="scenario", api_secret=SECRET)


def test_the_provider_by_position_is_named_on_the_call_made() -> None:
    async def upload() -> None:
        await ingest.upload("m.jsonl", "novita")  # type: ignore[call-arg]

    with pytest.raises(ConfigError) as by_upload:
        anyio.run(upload)
    with pytest.raises(ConfigError) as by_sync:
        ingest.upload_sync("m.jsonl", "novita")  # type: ignore[call-arg]
    for call, raised in (("upload", by_upload), ("upload_sync", by_sync)):
        assert raised.value.key == "provider"
        assert f"{call}('m.jsonl', provider='novita', ...)" in str(raised.value)
        assert "open_upload" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "insecure", "problem"),
    [
        ("notaurl", False, "expected an absolute http:// or https:// URL, got 'notaurl'"),
        ("ftp://127.0.0.1:1/", False, "expected an absolute http:// or https:// URL"),
        ("https://", False, "expected an absolute http:// or https:// URL"),
        ("http://127.0.0.1:port/", False, "not a valid URL"),
        ("http://api.example.com", False, "plain http is allowed only to this machine"),
        ("http://api.example.com", True, None),
        ("http://127.0.0.1:8700/v1", False, None),
        ("http://localhost:8700", False, None),
        ("http://[::1]:8700", False, None),
        ("https://api.novita.ai", False, None),
    ],
)
def test_which_base_urls_a_run_may_call(url: str, insecure: bool, problem: str | None) -> None:
    found = base_url_problem(url, allow_insecure=insecure)
    assert found is None if problem is None else problem in (found or "")


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--base-url", "notaurl"], "base_url: expected an absolute http:// or https:// URL"),
        (["--base-url", "ftp://127.0.0.1:1/"], "base_url: expected an absolute http:// or"),
        (["--base-url", "http://example.com"], "plain http is allowed only to this machine"),
        (["--base-url", "notaurl", "--dry-run"], "base_url: expected an absolute http://"),
    ],
)
def test_a_bad_base_url_is_refused_before_the_run(
    manifest: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    says: str,
) -> None:
    monkeypatch.setenv("NOVITA_API_KEY", "anything")
    assert main(["run", str(manifest), "--provider", "novita", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ingest: error: providers.novita.base_url: ")
    assert says in err
    assert not list(tmp_path.glob("*.journal*"))


@pytest.mark.parametrize("text", [f'api_key = "{SECRET}"\n', f'[run]\napi_key = "{SECRET}"\n'])
def test_a_key_in_the_config_file_names_the_variable(tmp_path: Path, text: str) -> None:
    path = tmp_path / "ingest.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    message = str(raised.value)
    assert "secrets are never read from the config file" in message
    assert "NOVITA_API_KEY for novita" in message
    assert "unknown section" not in message and SECRET not in message
