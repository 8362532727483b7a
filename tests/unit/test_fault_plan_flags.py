"""Emulator flags are checked while parsing: a bad fault plan or lifetime is a usage error.

`ingest run --sim --sim-faults bogus=1` (or ``put.503=abc``) ended in a
ValueError traceback, where `ingest sim --faults` and `ingest bench --faults`
gave a clean usage error listing the valid names. Every command that takes a
plan shares one argparse type (`ingest.cli.options.fault_plan`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ingest.cli.main import main

BAD_PLANS = [
    ("bogus=1", "fault plan item 'bogus=1': unknown name (known: seed, api.429,"),
    ("put.503=abc", "fault plan item 'put.503=abc': 'abc' is not a number"),
]


def _commands(manifest: Path, plan: str) -> dict[str, list[str]]:
    run = ["run", str(manifest), "--provider", "novita", "--sim", "--sim-faults", plan]
    return {
        "run": run,
        "retry-failed": [
            *("retry-failed", str(manifest) + ".novita.journal"),
            *("--sim", "--sim-faults", plan),
        ],
        "sim": ["sim", "--faults", plan],
        "bench": ["bench", "--faults", plan],
    }


@pytest.mark.parametrize(("plan", "message"), BAD_PLANS)
@pytest.mark.parametrize("command", ["run", "retry-failed", "sim", "bench"])
def test_a_bad_fault_plan_is_a_usage_error_naming_the_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, plan: str, message: str
) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "path": "a.png"}\n')
    with pytest.raises(SystemExit) as exited:
        main(_commands(manifest, plan)[command])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.strip().splitlines()[-1].startswith(f"ingest {command}: error: argument ")
    assert not list(tmp_path.glob("*.journal*"))  # refused before anything was opened


@pytest.mark.parametrize("lifetime", ["0", "-5", "soon"])
def test_a_bad_sim_lifetime_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lifetime: str
) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "path": "a.png"}\n')
    with pytest.raises(SystemExit) as exited:
        main(["run", str(manifest), "--provider", "novita", "--sim", "--sim-lifetime", lifetime])
    assert exited.value.code == 2
    assert "argument --sim-lifetime:" in capsys.readouterr().err


def test_a_run_without_a_fault_plan_does_not_import_the_emulator() -> None:
    # argparse passes the flag's default ("") through `fault_plan`; importing the
    # emulator for it (aiohttp.web and every provider's routes) was ~15 % of the
    # CPU of a 2,000-file `ingest run` (benchmarks/README.md, "hot path changes").
    code = (
        "import sys; from ingest.cli.main import build_parser; "
        "build_parser('run').parse_args(['run', 'm.jsonl', '--provider', 'novita']); "
        "print(sorted(m for m in sys.modules if m.startswith('ingest.sim')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
