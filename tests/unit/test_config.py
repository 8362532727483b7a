"""Settings: defaults, TOML, overrides, errors that name the key, secrets from the environment."""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from pathlib import Path

import pytest

from ingest.cli.config import example_toml
from ingest.cli.options import add_settings_flags, settings_from_args
from ingest.config import (
    DEFAULT_PROVIDERS,
    ProviderSettings,
    RunSettings,
    load_settings,
    read_secrets,
)
from ingest.errors import ConfigError
from ingest.providers import PROVIDER_NAMES
from ingest.providers.settings import (
    SETTINGS_CLASSES,
    AutoenhanceSettings,
    NovitaSettings,
    ScenarioSettings,
)
from ingest.redact import redact
from ingest.schema import inherit, keys, setting

ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    s = load_settings()
    assert s.run.put_concurrency == 32
    assert s.provider("novita").api_key_env == "NOVITA_API_KEY"


def test_a_run_setting_above_any_table_says_where_it_belongs(tmp_path: Path) -> None:
    # Newcomer finding: 'put_transport = "aiohttp"' at the top of ingest.toml was
    # "put_transport: unknown section; (known: run, providers)".
    config = tmp_path / "ingest.toml"
    config.write_text('put_transport = "aiohttp"\n')
    with pytest.raises(
        ConfigError,
        match=r"^put_transport: a \[run\] setting outside its table: put it under \[run\] in ",
    ):
        load_settings(config)


def test_example_config_is_valid_and_complete() -> None:
    s = load_settings(ROOT / "config.example.toml")
    assert s == load_settings()  # the example documents the defaults


def test_example_config_is_generated_from_the_schema() -> None:
    text = (ROOT / "config.example.toml").read_text()
    assert text == example_toml(), "regenerate: ingest config example > config.example.toml"


def test_example_config_shows_only_what_each_provider_uses() -> None:
    data = tomllib.loads((ROOT / "config.example.toml").read_text())
    assert list(data["run"]) == [f.name for f in dataclasses.fields(RunSettings)]
    assert sorted(data["providers"]) == sorted(PROVIDER_NAMES)
    for name, cls in SETTINGS_CLASSES.items():
        assert list(data["providers"][name]) == [f.name for f in dataclasses.fields(cls)], name
    assert "model_id" not in data["providers"]["novita"]
    assert "api_secret_env" not in data["providers"]["autoenhance"]


def test_every_key_has_help_and_a_flag_that_shows_it() -> None:
    parser = argparse.ArgumentParser()
    add_settings_flags(parser)
    text = " ".join(parser.format_help().split())
    classes: list[type] = [RunSettings, *SETTINGS_CLASSES.values()]
    for cls in classes:
        for key in keys(cls):
            assert key.help and key.flag in text, (cls.__name__, key.name)
            assert " ".join(key.help.split())[:30] in text, key.name
    assert "[scenario]" in text and "[autoenhance]" in text  # keys only some providers have


def test_a_key_without_help_or_of_an_unsupported_type_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Bare:
        n: int = 1

    @dataclasses.dataclass(frozen=True)
    class Listed:
        xs: tuple[int, ...] = setting((), "a list")

    with pytest.raises(TypeError, match="declare it with setting"):
        keys(Bare)
    with pytest.raises(TypeError, match="unsupported settings type"):
        keys(Listed)
    with pytest.raises(TypeError, match="no field 'nope'"):
        inherit(RunSettings, "nope", 1)


def test_each_provider_has_its_own_settings_class() -> None:
    settings = load_settings()
    for name in PROVIDER_NAMES:
        section: ProviderSettings = settings.provider(name)
        assert type(section) is SETTINGS_CLASSES[name]
        assert section == DEFAULT_PROVIDERS[name] == SETTINGS_CLASSES[name]()
    assert ScenarioSettings.of(settings.provider("scenario")).mode == "assets"
    with pytest.raises(TypeError, match="ScenarioSettings expected"):
        ScenarioSettings.of(settings.provider("novita"))
    assert AutoenhanceSettings.of(settings.provider("autoenhance")).order_id == ""
    assert NovitaSettings.key_envs == ("api_key_env",)
    assert ScenarioSettings.key_envs == ("api_key_env", "api_secret_env")


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
        ("[providers.novita]\nmodel_id = 'm'\n", "providers.novita.model_id"),
        ("[providers.scenario]\nmode = 'bulk'\n", "providers.scenario.mode"),
        ("[providers.scenario]\nmode = 1\n", "providers.scenario.mode"),
        ("[providers.novita]\nmax_size_mb = -1\n", "providers.novita.max_size_mb"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert info.value.key == key
    assert key in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[run]\nput_concurency = 8\n", "did you mean put_concurrency?"),
        ("[providers.novita]\nbase_ur = 'x'\n", "did you mean base_url?"),
        ("[providers.novta]\n", "did you mean novita?"),
        ("[rnu]\n", "did you mean run?"),
        ("[providers.scenario]\nmode = 'asets'\n", "did you mean assets?"),
        ("[providers.novita]\nmodel_id = 'm'\n", "a scenario setting, not a novita one"),
        ("[providers.scenario]\norder_id = 'o'\n", "an autoenhance setting, not a scenario one"),
        ("[providers.novita]\napi_key = 'sk-1'\n", "environment variable that api_key_env names"),
        (
            "[providers.scenario]\napi_secret = 's'\n",
            "api_secret_env names (now SCENARIO_API_SECRET)",
        ),
    ],
)
def test_bad_keys_say_what_was_meant(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert message in str(info.value)
    assert "sk-1" not in str(info.value)


def test_library_overrides_for_another_provider_name_it() -> None:
    with pytest.raises(ConfigError, match="a scenario setting, not a novita one") as info:
        load_settings(provider_overrides={"novita": {"model_id": "m"}})
    assert info.value.key == "providers.novita.model_id"


def _flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_settings_flags(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(
    ("provider", "argv", "message"),
    [
        ("novita", ("--model-id", "m"), "--model-id is a scenario setting, not a novita one"),
        (
            "modelhunter",
            ("--mode", "inline"),
            "--mode is a scenario setting, not a modelhunter one",
        ),
        (
            "scenario",
            ("--order-id", "o"),
            "--order-id is an autoenhance setting, not a scenario one",
        ),
        ("autoenhance", ("--api-secret-env", "X"), "--api-secret-env is a scenario setting"),
        (None, ("--base-url", "http://x"), "--base-url is a provider setting: name the provider"),
    ],
)
def test_a_flag_for_another_provider_is_an_error_naming_it(
    provider: str | None,
    argv: tuple[str, ...],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./ingest.toml
    with pytest.raises(ConfigError) as info:
        settings_from_args(_flags(*argv), provider)
    assert message in str(info.value)


def test_flags_set_the_chosen_providers_own_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = _flags(
        "--model-id", "m1", "--mode", "inline", "--base-url", "http://h", "--put-concurrency", "3"
    )
    settings = settings_from_args(args, "scenario")
    scenario = ScenarioSettings.of(settings.provider("scenario"))
    assert (scenario.model_id, scenario.mode, scenario.base_url) == ("m1", "inline", "http://h")
    assert settings.run.put_concurrency == 3
    assert settings.provider("novita") == DEFAULT_PROVIDERS["novita"]
    with pytest.raises(SystemExit):  # argparse refuses a mode that is not one of the choices
        _flags("--mode", "bulk")


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
