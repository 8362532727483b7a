"""`ingest sim`: arguments, help, and a real foreground process answering until SIGTERM."""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys

import aiohttp
import anyio
import pytest

from ingest.cli import sim as sim_cli

# Builds the `ingest` parser with only the `sim` command, so the test does not
# depend on the other command modules.
LAUNCHER = """
import argparse, sys
from ingest.cli import sim
parser = argparse.ArgumentParser(prog="ingest")
sim.register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(["sim", *sys.argv[1:]])
sys.exit(args.func(args))
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ingest")
    sim_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_arguments() -> None:
    args = _parser().parse_args(
        [
            "sim",
            "--port",
            "8123",
            "--lifetime",
            "30",
            "--faults",
            "seed=2,api.429=0.5",
            "--key",
            "a",
            "--key",
            "b",
            "--assets-id-string",
        ]
    )
    assert args.func is sim_cli.run
    assert (args.host, args.port, args.lifetime) == ("127.0.0.1", 8123, 30.0)
    assert args.faults == "seed=2,api.429=0.5"
    assert args.keys == ["a", "b"]
    assert args.assets_id_string is True


@pytest.mark.parametrize(
    "argv",
    [
        ["--faults", "api.418=1"],
        ["--port", "70000"],
        ["--lifetime", "0"],
        ["--port", "x"],
        # These named a settings field ("max_size_bytes must be >= 1, got -1000000").
        ["--modelhunter-max-mb", "-1"],
        ["--scenario-json-limit", "10"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["sim", *argv])
    assert info.value.code == 2
    assert f"ingest sim: error: argument {argv[0]}:" in capsys.readouterr().err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["sim", "--help"])
    text = capsys.readouterr().out
    for needle in (
        "--lifetime",
        "--faults",
        "api.retry_after",
        "put.reset",
        "--key",
        "/_sim/stats",
        "SIGTERM",
    ):
        assert needle in text


def test_importing_the_command_does_not_import_aiohttp() -> None:
    code = "import sys, ingest.cli.sim; print('aiohttp' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


@pytest.mark.anyio
async def test_foreground_process_serves_until_sigterm() -> None:
    async with await anyio.open_process(
        [sys.executable, "-c", LAUNCHER, "--port", "0", "--key", "k"],
        stdin=subprocess.DEVNULL,
    ) as process:
        assert process.stdout is not None
        line = b""
        with anyio.fail_after(30):
            while not line.endswith(b"\n"):
                line += await process.stdout.receive(1)
        match = re.fullmatch(r"ingest sim listening on (http://127\.0\.0\.1:\d+)\n", line.decode())
        assert match, line
        base_url = match[1]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base_url}/_sim/health") as resp:
                assert resp.status == 200
                assert (await resp.json())["ok"] is True
            async with http.post(
                f"{base_url}/v3/assets/training_dataset",
                json={"file_extension": "png"},
                headers={"Authorization": "Bearer nope"},
            ) as resp:
                assert resp.status == 403
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            assert await process.wait() == 0
