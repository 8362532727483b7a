"""The `ingest` entry point: `--version`, and which commands leave with `os._exit`."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import typing

import pytest

from ingest.cli import main as cli_main


def test_version_flag_prints_the_package_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ingest", "--version"], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "ingest 0.1.0\n"
    assert result.stdout == f"ingest {importlib.metadata.version('ingest')}\n"  # pyproject's


def test_version_flag_imports_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli_main.build_parser("--version")
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == "ingest 0.1.0\n"


class QuickExit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@pytest.mark.parametrize(
    ("command", "quick"),
    [("run", True), ("bench", True), ("sim", False), ("status", False), ("validate", False)],
)
def test_only_run_and_bench_skip_the_interpreter_teardown(
    monkeypatch: pytest.MonkeyPatch, command: str, quick: bool
) -> None:
    def fake_exit(code: int) -> None:
        raise QuickExit(code)

    monkeypatch.setattr(sys, "argv", ["ingest", command, "x"])
    monkeypatch.setattr(cli_main, "main", lambda argv: 3)
    monkeypatch.setattr(os, "_exit", fake_exit)
    if quick:
        with pytest.raises(QuickExit) as quick_exit:
            cli_main.entry()
        assert quick_exit.value.code == 3
    else:
        with pytest.raises(SystemExit) as normal_exit:
            cli_main.entry()
        assert normal_exit.value.code == 3


def test_building_the_run_parser_reads_each_settings_class_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every provider flag asks which providers own it; resolving the settings
    # classes' type hints for each ask was ~15-20 ms of every `ingest run`'s start-up.
    calls: list[type] = []
    real = typing.get_type_hints

    def counted(cls: type) -> dict[str, object]:
        calls.append(cls)
        return real(cls)

    monkeypatch.setattr(typing, "get_type_hints", counted)
    cli_main.build_parser("run")
    assert len(calls) == len(set(calls))
