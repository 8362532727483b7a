"""Secrets in messages, both ways (U5): a pasted key is never echoed, a path is not over-masked.

A key pasted where its variable's name belongs (``api_key_env =
"sk-live-abcdef123456"``) was echoed in full ("environment variable
sk-live-abcdef123456 is empty or not set", ``# $sk-live-abcdef123456: NOT
SET``); with ``NOVITA_API_KEY=badkey`` the journal path
``/data/badkey_novita.journal`` was printed as ``/data/***_novita.journal``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest import redact as redaction
from ingest.cli.main import main
from ingest.journal import Header, Journal
from ingest.redact import key_variable_problem, preview, redact, register_secret

PASTED = "sk-live-abcdef123456"


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test registers into its own empty registry (secrets are process-wide)."""
    monkeypatch.setattr(redaction, "_anywhere", set())
    monkeypatch.setattr(redaction, "_short", set())
    monkeypatch.setattr(redaction, "_short_pattern", None)


def test_a_short_secret_is_masked_only_as_a_whole_token() -> None:
    register_secret("badkey")
    for kept in ("/data/badkey_novita.journal", "xbadkey", "badkey2", "sk-badkey-1"):
        assert redact(kept) == kept
    assert redact("Authorization: Bearer badkey") == "Authorization: Bearer ***"
    assert redact("?key=badkey&x=1") == "?key=***&x=1"
    assert redact('{"key": "badkey"}, (badkey). badkey') == '{"key": "***"}, (***). ***'
    assert redact("/data/badkey.journal") == "/data/***.journal"


def test_a_long_secret_is_masked_wherever_it_appears() -> None:
    register_secret(PASTED)
    register_secret("abcdefgh")  # 8 characters: the shortest masked inside words
    assert redact(f"/data/{PASTED}_novita.journal") == "/data/***_novita.journal"
    assert redact(f"x{PASTED}y and zabcdefghz") == "x***y and z***z"


def test_values_too_short_to_be_keys_are_not_registered() -> None:
    register_secret("abc")
    assert redact("abc 1 abc") == "abc 1 abc"


def test_a_key_variable_must_be_a_variable_name() -> None:
    for name in ("NOVITA_API_KEY", "_K", "key2", ""):
        assert key_variable_problem("api_key_env", name) is None
    problem = key_variable_problem("api_key_env", PASTED)
    assert problem is not None
    assert problem.startswith(
        "api_key_env must name an environment variable (it looks like a key: sk-l…)"
    )
    assert PASTED not in problem and PASTED[:5] not in problem
    assert redact(f"echo {PASTED}") == "echo ***"  # registered: masked if it shows up elsewhere
    assert preview("badkey") == "b…"  # a short value shows at most a quarter of itself


def test_run_refuses_a_pasted_key_without_echoing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "path": "a.png"}\n')
    for extra in ([], ["--sim"], ["--dry-run"]):
        args = ["run", str(manifest), "--provider", "novita", "--api-key-env", PASTED, *extra]
        assert main(args) == 2
        out, err = capsys.readouterr()
        assert err.strip().splitlines() == [
            "ingest: error: providers.novita.api_key_env must name an environment variable "
            "(it looks like a key: sk-l…); put the key in the environment and name the "
            "variable here"
        ]
        assert PASTED not in out + err


def test_config_show_flags_a_pasted_key_without_echoing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ingest.toml").write_text(f'[providers.scenario]\napi_secret_env = "{PASTED}"\n')
    assert main(["config", "show", "--provider", "scenario"]) == 2
    out, err = capsys.readouterr()
    assert PASTED not in out + err
    line = next(line for line in out.splitlines() if line.startswith("api_secret_env"))
    assert line.startswith('api_secret_env = "sk-l…"')
    assert "ERROR: api_secret_env must name an environment variable" in line
    assert "providers.scenario.api_secret_env must name an environment variable" in err
    assert main(["config", "show", "--provider", "novita"]) == 0  # other sections are fine


def test_a_journal_path_holding_a_short_keys_text_is_printed_as_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOVITA_API_KEY", "badkey")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "path": "a.png"}\n')
    journal = tmp_path / "badkey_novita.journal"
    Journal.open(journal, Header(provider="scenario", manifest=str(manifest)))[0].close()
    assert main(["run", str(manifest), "--provider", "novita", "--journal", str(journal)]) == 2
    err = capsys.readouterr().err
    assert f"journal {journal} was made for provider" in err, err
    assert "***" not in err


KEYISH = "a8f3k2m9x7q1w5e6r4t0"  # a key that is also a valid variable name


def test_an_unset_variable_that_looks_like_a_key_is_not_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Newcomer7: `--api-key-env a8f3k2m9x7q1w5e6r4t0` (the key, all letters and digits, so a
    valid variable name) was echoed whole: "environment variable a8f3k2m9x7q1w5e6r4t0 is
    empty or not set", and `# $a8f3k2m9x7q1w5e6r4t0: NOT SET` in `config show`."""
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "path": "a.png"}\n')
    monkeypatch.chdir(tmp_path)
    for pasted in (KEYISH, "sk_live_4eC39HqLyjWDarjtT1zdp7dc"):
        monkeypatch.delenv(pasted, raising=False)
        args = ["run", str(manifest), "--provider", "novita", "--api-key-env", pasted]
        assert main([*args, "--base-url", "http://127.0.0.1:9"]) == 2
        assert main(["config", "show", "--provider", "novita", "--api-key-env", pasted]) == 0
        out, err = capsys.readouterr()
        assert pasted not in out + err
        assert f"{pasted[:4]}… is not set, and it looks like a key" in err
        assert f"${pasted[:4]}…: NOT SET" in out
    for name in ("NOVITA_API_KEY_2", "novita_key_2024_production"):  # names, said as they are
        monkeypatch.delenv(name, raising=False)
        args = ["run", str(manifest), "--provider", "novita", "--api-key-env", name]
        assert main([*args, "--base-url", "http://127.0.0.1:9"]) == 2
        assert f"environment variable {name} is empty or not set" in capsys.readouterr().err
