"""The front door's pure parts: settings keywords, `Result.complete` and `ingest run`'s exit codes.

Found by review: `ingest run` exited 0 ("every item done") when an item was
neither done nor recorded as failed (an id of "failed" with a missing file),
because the exit code looked only at the failed/rejected/unfinished counts.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ingest.api import Result, StopReason
from ingest.api.wiring import resolve_settings
from ingest.cli.report import Reporter, plural
from ingest.cli.run import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_STOPPED, exit_code
from ingest.config import load_settings
from ingest.engine import Counters
from ingest.errors import ConfigError
from ingest.providers.settings import ScenarioSettings


def result(
    read: int,
    done: int,
    *,
    skipped: int = 0,
    failed: int = 0,
    rejected: int = 0,
    changed: int = 0,
    in_flight: int = 0,
    read_all: bool = True,
    journal_done: int | None = None,
    stop: StopReason | None = None,
    drained: bool = False,
) -> Result:
    """A run that read `read` entries: `done` uploaded now, `skipped` done before, and the rest.

    The journal's counts follow unless given (`journal_done`: it also holds
    entries since removed from the manifest).
    """
    this_run = Counters(
        read=read,
        done=done,
        skipped=skipped,
        failed=failed,
        rejected=rejected,
        changed=changed,
        in_flight=in_flight,
    )
    return Result(
        done=done + skipped + changed if journal_done is None else journal_done,
        failed=failed,
        rejected=rejected,
        in_flight=in_flight,
        total=read if read_all else None,
        stop_reason=stop,
        stop_message=None if stop is None else "why",
        drained=drained,
        journal=Path("j"),
        elapsed_s=1.0,
        this_run=this_run,
    )


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        (result(2, 2), EXIT_OK),
        (result(3, 1, skipped=2), EXIT_OK),
        # Found by review: an entry removed from the manifest leaves its done record in the
        # journal ("3 done of 2"); the run is still complete (it exited 1).
        (result(2, 0, skipped=2, journal_done=3), EXIT_OK),
        # One item neither done nor recorded anywhere: not every item is done.
        (result(2, 1), EXIT_FAILED),
        (result(2, 1, failed=1), EXIT_FAILED),
        (result(2, 1, rejected=1), EXIT_FAILED),
        (result(2, 1, in_flight=1), EXIT_FAILED),
        # A file changed since its upload, not uploaded again: not done (it exited 0).
        (result(2, 1, changed=1), EXIT_FAILED),
        (result(0, 0, read_all=False), EXIT_FAILED),  # the manifest was never read to its end
        (result(2, 1, stop=StopReason.PROVIDER), EXIT_STOPPED),
        (result(2, 2, stop=StopReason.JOURNAL), EXIT_STOPPED),
        (result(1, 1, read_all=False, stop=StopReason.INTERRUPTED), EXIT_INTERRUPTED),
        (result(1, 1, read_all=False, drained=True), EXIT_INTERRUPTED),
    ],
)
def test_exit_0_only_when_every_manifest_item_is_done(outcome: Result, code: int) -> None:
    err = io.StringIO()
    assert exit_code(outcome, Reporter("quiet", err=err)) == code
    assert outcome.complete is (code == EXIT_OK)
    said = err.getvalue()
    changed = outcome.this_run.changed
    if code == EXIT_FAILED and outcome.not_done > changed:
        assert f"{plural(outcome.not_done - changed, 'item')} not uploaded (" in said
    if changed:
        assert (
            f"{plural(changed, 'file')} changed since upload; run with --reupload-changed to "
            f"upload {'it' if changed == 1 else 'them'} again" in said
        )
        assert "not uploaded" not in said


def test_settings_keywords_go_to_their_section() -> None:
    settings = resolve_settings("scenario", None, {"put_concurrency": 3, "model_id": "m"})
    assert settings.run.put_concurrency == 3
    assert ScenarioSettings.of(settings.provider("scenario")).model_id == "m"
    assert settings.provider("novita") == load_settings().provider("novita")


def test_unknown_settings_are_named_together() -> None:
    # Newcomer7: a misspelt keyword got no "did you mean", as a misspelt config key does.
    with pytest.raises(ConfigError) as info:
        resolve_settings("novita", None, {"put_concurency": 1, "bogus": 2, "api_rate": 1.0})
    assert str(info.value) == (
        "unknown settings for novita: bogus, put_concurency (did you mean put_concurrency?)"
    )


def test_a_key_of_another_provider_names_its_owner() -> None:
    with pytest.raises(ConfigError, match=r"model_id \(a scenario setting, not a novita one\)"):
        resolve_settings("novita", None, {"model_id": "m"})


def test_a_bad_value_names_its_key() -> None:
    with pytest.raises(ConfigError, match=r"run\.put_concurrency"):
        resolve_settings("novita", None, {"put_concurrency": "many"})


def test_a_settings_object_and_keywords_do_not_mix() -> None:
    with pytest.raises(ConfigError, match="one or the other"):
        resolve_settings("novita", load_settings(), {"put_concurrency": 1})
    assert resolve_settings("novita", load_settings(), {}) == load_settings()


def test_a_config_file_then_keywords(tmp_path: Path) -> None:
    config = tmp_path / "ingest.toml"
    config.write_text("[run]\nput_concurrency = 5\napi_concurrency = 7\n")
    settings = resolve_settings("novita", config, {"put_concurrency": 2})
    assert (settings.run.put_concurrency, settings.run.api_concurrency) == (2, 7)
    with pytest.raises(ConfigError, match="not found"):
        resolve_settings("novita", tmp_path / "none.toml", {})
