"""A plain `ingest run` of local files imports none of what only other runs need."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

# Each is imported by the run that needs it: --sim, --convert, URL sources,
# --coordinator (its worker's CLI too), Parquet shards, the human display (--json shows none); the
# other manifest formats' readers, a config file's TOML parser, "did you mean"
# and what `ingest status` and `export` print.
LAZY = (
    "ingest.manifest.folder",
    "ingest.manifest.csvfile",
    "ingest.manifest.packed.members",
    "ingest.manifest.packed.samples",
    "ingest.journal.report",
    "ingest.journal.exporting",
    "tomllib",
    "difflib",
    "zipfile",
    "ingest.sim",
    "ingest.convert",
    "PIL",
    "ingest.remote",
    "ingest.coord.connection",
    "ingest.coord.names",
    "ingest.cli.coordinated",  # the worker's CLI: a plain run's flags are cli.scaleout's
    "ingest.cli.shared_run",
    "redis",
    "pyarrow",
    "rich",
    "urllib.request",  # read for a *_proxy variable only (transport.pool._proxies)
    "http.client",
    "email",  # an HTTP date not in IMF-fixdate only (lease._http_date, retry)
    "hashlib",  # a URL entry's key (redact.url_key)
    "shutil",  # journal rebind and repair; argparse's width (cli.main.help_width) without it
    "bz2",
    "lzma",
    "ingest.manifest.walkstats",  # a walk's (folder, shard) tally
    "zlib",  # a gzip or deflate API answer (transport.call._decoded)
    "glob",  # a journal's bad header names the journals beside it (journal.header.bad_header)
)


def test_a_plain_run_does_not_import_what_it_does_not_use(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image\n")  # rejected by the local checks: no request is made
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(f'{{"path": "{bad}"}}\n')
    argv = ["run", str(manifest), "--provider", "novita", "--base-url", "http://127.0.0.1:9"]
    argv += ["--journal", str(tmp_path / "j"), "--json"]
    # By the command's own entry, which pauses the collector over the start-up (cli/startup.py)
    # and leaves by os._exit: the modules and the collector's state are told there.
    code = (
        "import gc, os, sys; from ingest.cli.main import entry\n"
        "def leave(code):\n"
        "    print(' '.join(sorted(sys.modules)), file=sys.stderr)\n"
        "    print('gc', gc.isenabled(), gc.get_freeze_count(), file=sys.stderr)\n"
        "    sys.stderr.flush(); _exit(code)\n"
        "_exit, os._exit = os._exit, leave\n"
        f"sys.argv = ['ingest', *{argv!r}]\n"
        "entry()"
    )
    env = {**os.environ, "NOVITA_API_KEY": "k"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert '"rejected":1' in done.stdout, done.stdout + done.stderr
    modules, collector = done.stderr.splitlines()[-2:]
    loaded = set(modules.split())
    assert "ingest.engine.core" in loaded  # the run got as far as the engine
    assert not {m for m in loaded if m.split(".")[0] in LAZY or m.startswith(LAZY)}
    enabled, frozen = collector.split()[1:]
    assert enabled == "True"  # resumed before the upload
    assert int(frozen) > 10_000  # the start-up's objects, which no collection walks again


def test_the_collector_paused_over_the_start_up_is_back_for_a_dry_run(tmp_path: Path) -> None:
    from ingest.cli import startup
    from ingest.cli.main import main

    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(f'{{"path": "{image}"}}\n')
    argv = ["run", str(manifest), "--provider", "novita", "--dry-run", "--json"]
    startup.pause()
    try:
        main([*argv, "--journal", str(tmp_path / "j")])
        assert gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()
    startup.resume()  # a second resume, or one without a pause, does nothing
    assert gc.get_freeze_count() == 0


def test_an_imf_fixdate_is_read_without_email_utils() -> None:
    code = (
        "import sys\n"
        "import random; from ingest.lease import _http_date, server_skew\n"
        "assert server_skew('Sun, 06 Nov 1994 08:49:37 GMT', 0.0) == 784111777.0\n"
        "assert 'email.utils' not in sys.modules\n"
        "stamps = [random.uniform(0, 4e9) for _ in range(500)]\n"
        "import email.utils\n"
        "for t in stamps:\n"
        "    v = email.utils.formatdate(t, usegmt=True)\n"
        "    assert _http_date(v) == email.utils.parsedate_to_datetime(v).timestamp(), v\n"
        "for v in ('Sunday, 06-Nov-94 08:49:37 GMT', 'Sun Nov  6 08:49:37 1994'):\n"
        "    assert _http_date(v) == 784111777.0, v  # the obsolete forms, by email.utils\n"
        "assert _http_date('Sun, 31 Feb 1994 08:49:37 GMT') is None\n"
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr


def test_the_readme_installs_with_bytecode_and_reference_measures_that_install() -> None:
    # An editable install under PYTHONDONTWRITEBYTECODE recompiles every module each run
    # (a 1-file run 0.69 s of CPU against 0.48 s: benchmarks/README.md, Session 9: start-up).
    import importlib.util

    benchmarks = Path(__file__).resolve().parents[2] / "benchmarks"
    sys.path.insert(0, str(benchmarks))  # reference.py imports its harness by name
    try:
        spec = importlib.util.spec_from_file_location(
            "bench_reference", benchmarks / "reference.py"
        )
        assert spec is not None and spec.loader is not None
        reference = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = reference  # its dataclasses look their module up
        spec.loader.exec_module(reference)
    finally:
        sys.path.remove(str(benchmarks))
        sys.modules.pop("bench_reference", None)
        sys.modules.pop("harness", None)
    install = reference.readme_install()
    assert install == "python3 -m venv .venv && . .venv/bin/activate && pip install ."
