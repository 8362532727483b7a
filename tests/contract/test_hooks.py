"""The class-level seam of every provider, called as the CLI calls it, and the two
commands that use only that seam (`validate`, `run --dry-run`) run as a user would.

These need no emulator and no session: they are what a command does before it
talks to a provider, and what crashed for Scenario when its class lacked
`capabilities` (mypy could not see it while the registry returned `Any`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest

from ingest.capabilities import Capabilities
from ingest.config import DEFAULT_PROVIDERS, ProviderSettings
from ingest.errors import ConfigError
from ingest.providers import PROVIDER_NAMES, ProviderName, provider_class
from ingest.providers.base import ProviderClass
from ingest.providers.settings import SETTINGS_CLASSES
from ingest.schema import keys
from tests.contract.harness import HARNESSES, Harness, available
from tests.simproc import ingest_env, run_ingest

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "examples" / "manifest.jsonl"


@pytest.fixture(params=available())
def harness(request: pytest.FixtureRequest) -> Harness:
    return HARNESSES[request.param]


def settings_of(harness: Harness) -> ProviderSettings:
    return dataclasses.replace(DEFAULT_PROVIDERS[harness.name], **harness.settings)


def flags_of(harness: Harness) -> list[str]:
    """The harness's settings as the command-line flags a user would type."""
    flags: list[str] = []
    for key, value in harness.settings.items():
        flags += ["--" + key.replace("_", "-"), str(value)]
    return flags


def test_every_provider_has_a_harness() -> None:
    assert {HARNESSES[key].name for key in available()} == set(PROVIDER_NAMES)


def test_class_is_registered_under_its_name(harness: Harness) -> None:
    cls: ProviderClass = provider_class(harness.name)
    assert cls.name == harness.name


def test_key_envs_name_settings_that_name_variables(harness: Harness) -> None:
    cls = provider_class(harness.name)
    settings = settings_of(harness)
    assert cls.key_envs and "api_key_env" in cls.key_envs
    for field_name in cls.key_envs:
        variable = getattr(settings, field_name)
        assert isinstance(variable, str) and variable, field_name


def test_capabilities_need_no_session(harness: Harness) -> None:
    caps = provider_class(harness.name).capabilities(settings_of(harness))
    assert isinstance(caps, Capabilities)
    assert caps.formats
    assert caps.finalize_batch >= 1
    assert caps.finalize or caps.finalize_batch == 1
    limited = dataclasses.replace(settings_of(harness), max_size_mb=1.0)
    assert provider_class(harness.name).capabilities(limited).max_size == 1024 * 1024


def test_auth_headers_carry_the_secrets(harness: Harness) -> None:
    cls = provider_class(harness.name)
    secrets = {name: f"secret-{name}-0123456789" for name in cls.key_envs}
    headers = cls.auth_headers(secrets)
    assert headers and all(isinstance(v, str) and v for v in headers.values())
    other = cls.auth_headers({name: f"other-{name}-9876543210" for name in cls.key_envs})
    assert headers != other  # the secrets are in there, however encoded


def test_run_params_are_kept_on_resume(harness: Harness) -> None:
    cls = provider_class(harness.name)
    settings = settings_of(harness)
    bound = cls.run_params(settings, {})
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in bound.items())
    assert cls.run_params(settings, bound) == bound


def test_run_params_without_required_settings_name_the_key() -> None:
    """A provider that needs a setting (Scenario's model id) says which, before any work."""
    with pytest.raises(ConfigError) as info:
        provider_class("scenario").run_params(DEFAULT_PROVIDERS["scenario"], {})
    assert info.value.key == "providers.scenario.model_id"


def test_export_document_is_json_and_names_every_item(harness: Harness) -> None:
    cls = provider_class(harness.name)
    params = cls.run_params(settings_of(harness), {})
    rows = [
        {"key": f"k{i}", "remote_id": f"remote-{i}", "url": f"https://cdn/x{i}", "caption": "c"}
        for i in range(3)
    ]
    document = cls.export_document(rows, params)
    text = orjson.dumps(document).decode()
    assert all(f"remote-{i}" in text for i in range(3))
    empty = orjson.loads(orjson.dumps(cls.export_document([], params)))
    assert isinstance(empty, dict)


@pytest.mark.parametrize("command", ["validate", "dry-run"])
def test_commands_before_any_call_work_as_a_user_types_them(
    harness: Harness, tmp_path: Path, command: str
) -> None:
    args = [str(MANIFEST), "--provider", harness.name, *flags_of(harness)]
    if command == "validate":
        args = ["validate", *args]
    else:
        args = ["run", *args, "--dry-run", "--plain", "--journal", str(tmp_path / "j")]
    done = run_ingest(args, env=ingest_env(), cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    assert "12 ok" in out if command == "validate" else "would upload 12 files" in out
    assert not (tmp_path / "j").exists()  # a dry run writes no journal


@pytest.mark.parametrize("provider", PROVIDER_NAMES)
def test_a_flag_of_another_provider_is_refused_by_name(
    provider: ProviderName, tmp_path: Path
) -> None:
    own = {key.name for key in keys(SETTINGS_CLASSES[provider])}
    other = next(
        key for cls in SETTINGS_CLASSES.values() for key in keys(cls) if key.name not in own
    )
    value = other.choices[0] if other.choices else "x"
    args = ["validate", str(MANIFEST), "--provider", provider, other.flag, value]
    done = run_ingest(args, env=ingest_env(), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"{other.flag} is a" in done.stderr and f"setting, not a {provider} one" in done.stderr


def test_the_registry_imports_no_adapter_until_asked() -> None:
    """A command that never talks to a provider (`config show`) never imports aiohttp."""
    import subprocess
    import sys

    code = (
        "import sys, ingest.providers, ingest.config, ingest.cli.config;"
        "print('aiohttp' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "False"
