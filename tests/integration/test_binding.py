"""A journal knows what it was made against: issue 11, items 1, 2 and 3 replayed as a user types them.

Each test runs the real command line in child processes, with `ingest sim`
in its own process where the finding used one, and fails on the code before
the journal bound its endpoint: W1 (a `--sim` try-out then a real run
uploaded nothing and exited 0), W2 (`retry-failed` went to the provider's
production host and switched Scenario's mode), W6 (`--force` on another
provider's journal marked every item done).

No test sends anything beyond loopback: where the old code would have gone
to a provider's real host, an `ingest.toml` in the working folder points
that provider at a closed loopback port instead (a refused connection, so
the old code fails at once and the new one never reads it).
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from tests.images import make_image
from tests.simproc import ingest_env, json_events, run_ingest, sim_process

REPO = Path(__file__).resolve().parents[2]
NOVITA = ingest_env(NOVITA_API_KEY="anything")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of the repository's `examples/` (the README's commands run from there)."""
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    return tmp_path


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def guard(where: Path, provider: str, path: str = "") -> str:
    """An `ingest.toml` in `where` sending `provider` to a closed loopback port (see the docstring)."""
    url = f"http://127.0.0.1:{closed_port()}{path}"
    (where / "ingest.toml").write_text(f'[providers.{provider}]\nbase_url = "{url}"\n')
    return url


def header(journal: Path) -> dict[str, object]:
    with journal.open("rb") as fh:
        return dict(json.loads(fh.readline()))


def test_w1_a_sim_try_out_does_not_poison_the_real_run(workdir: Path) -> None:
    """The README's set-up command, then its "Emulator" section against the same manifest."""
    tried = run_ingest(
        ["run", "examples/manifest.jsonl", "--provider", "novita", "--sim"], env=NOVITA, cwd=workdir
    )
    assert tried.returncode == 0, tried.stderr
    journal = workdir / "examples/manifest.jsonl.novita.journal"
    assert header(journal)["endpoint"] == "emulator"
    shown = run_ingest(["status", str(journal)], env=NOVITA, cwd=workdir)
    assert "endpoint  the built-in emulator" in shown.stdout, shown.stdout
    exported = run_ingest(["export", str(journal), "--format", "provider"], env=NOVITA, cwd=workdir)
    assert exported.returncode == 0
    assert "made against the built-in emulator (--sim): these ids exist only" in exported.stderr
    faults = "seed=1,api.429=0.05,put.503=0.05,put.latency=0.2"
    with sim_process("--lifetime", "3", "--faults", faults) as sim:
        real = ["run", "examples/manifest.jsonl", "--provider", "novita", "--base-url"]
        refused = run_ingest([*real, sim.base_url], env=NOVITA, cwd=workdir)
        assert refused.returncode == 2, refused.stderr
        line = refused.stderr.strip()
        assert "\n" not in line and "Traceback" not in line
        assert f"was made against the built-in emulator; this run targets {sim.base_url}" in line
        assert "use another --journal (or journal=)" in line
        assert "--force" not in line  # it would not help: the records are the emulator's
        assert sim.objects() == []  # nothing was sent, and nothing claimed done
        # Kept apart, the real run uploads every item to the real endpoint.
        apart = run_ingest(
            [*real, sim.base_url, "--journal", "real.journal", "--json"], env=NOVITA, cwd=workdir
        )
        assert apart.returncode == 0, apart.stderr
        assert json_events(apart.stdout)[-1]["done"] == 12
        assert len(sim.objects()) == 12
        assert header(workdir / "real.journal")["endpoint"] == sim.base_url
        shown = run_ingest(["status", "real.journal", "--json"], env=NOVITA, cwd=workdir)
        assert json.loads(shown.stdout)["endpoint"] == sim.base_url
        real_ids = run_ingest(["export", "real.journal"], env=NOVITA, cwd=workdir)
        assert real_ids.returncode == 0 and "emulator" not in real_ids.stderr
        # And the other way round: the real journal refuses an emulator run.
        back = run_ingest(
            [*real[:4], "--sim", "--journal", "real.journal"], env=NOVITA, cwd=workdir
        )
        assert back.returncode == 2
        assert "this run targets the built-in emulator" in back.stderr


def test_w1_the_same_with_a_folder(workdir: Path) -> None:
    photos = workdir / "photos"
    shutil.copytree(workdir / "examples/dataset", photos)
    tried = run_ingest(["run", "photos", "--provider", "novita", "--sim"], env=NOVITA, cwd=workdir)
    assert tried.returncode == 0, tried.stderr
    with sim_process() as sim:
        real = ["run", "photos", "--provider", "novita", "--base-url", sim.base_url]
        refused = run_ingest(real, env=NOVITA, cwd=workdir)
        assert refused.returncode == 2, refused.stderr
        assert str(photos / ".ingest/novita.journal") in refused.stderr
        assert "built-in emulator" in refused.stderr
        dry = run_ingest([*real, "--dry-run"], env=NOVITA, cwd=workdir)
        assert dry.returncode == 2 and "built-in emulator" in dry.stderr  # not "skip 12"
        assert sim.objects() == []


def scenario_list(workdir: Path) -> Path:
    """W2's list: an image the API refuses every time, and a small one.

    The refused one opens with a FileTypeBox of 12 bytes, too short for its
    minor version: the client's sniff reads its major brand "heic" and takes
    it for HEIC, the emulator's own table wants the box's 16 bytes
    (ISO/IEC 14496-12) and sees no image (a 400).
    """
    (workdir / "large_1.png").write_bytes(b"\x00\x00\x00\x0cftypheic" + bytes(4096))
    make_image(workdir / "shape_00.png", "png", 4096, seed=2)
    listing = workdir / "list.txt"
    listing.write_text("large_1.png\nshape_00.png\n")
    return listing


SCENARIO = ingest_env(SCENARIO_API_KEY="realkey", SCENARIO_API_SECRET="realsecret")
INLINE = ["--provider", "scenario", "--model-id", "model_demo", "--mode", "inline"]


def test_w2_retry_failed_of_a_sim_journal_stays_on_the_emulator(workdir: Path) -> None:
    scenario_list(workdir)
    first = run_ingest(["run", "list.txt", *INLINE, "--sim", "--json"], env=SCENARIO, cwd=workdir)
    assert first.returncode == 1, first.stderr
    failed = [e for e in json_events(first.stdout) if e["event"] == "item_failed"]
    assert [e["code"] for e in failed] == ["bad_request"]
    journal = workdir / "list.txt.scenario.journal"
    assert header(journal)["bind"] == {
        "model_id": "model_demo",
        "mode": "inline",
        "preset": "default",
    }
    guard(workdir, "scenario", "/v1")  # where the old code went (the production host) instead
    retried = run_ingest(["retry-failed", str(journal), "--json"], env=SCENARIO, cwd=workdir)
    assert retried.returncode == 1, retried.stderr
    events = json_events(retried.stdout)
    assert any("using the built-in emulator" in e.get("message", "") for e in events)
    again = [e for e in events if e["event"] == "item_failed"]
    # Still inline (the mode is the journal's), still on the emulator (no network error).
    assert [e["code"] for e in again] == ["bad_request"]
    # `--sim` no longer switches the mode quietly; naming another mode is refused.
    with_sim = run_ingest(
        ["retry-failed", str(journal), "--sim", "--json"], env=SCENARIO, cwd=workdir
    )
    assert with_sim.returncode == 1
    assert [e["code"] for e in json_events(with_sim.stdout) if e["event"] == "item_failed"] == [
        "bad_request"
    ]
    switched = run_ingest(
        ["retry-failed", str(journal), "--mode", "assets"], env=SCENARIO, cwd=workdir
    )
    assert switched.returncode == 2
    assert "with mode 'inline'; this run uses mode 'assets'" in switched.stderr


def test_w2_retry_failed_of_a_base_url_journal_goes_to_that_url(workdir: Path) -> None:
    scenario_list(workdir)
    journal = workdir / "list.txt.scenario.journal"
    with sim_process("--scenario-model", "model_demo") as sim:
        base = sim.base_url + "/v1"
        first = run_ingest(
            ["run", "list.txt", *INLINE, "--base-url", base], env=SCENARIO, cwd=workdir
        )
        assert first.returncode == 1, first.stderr
        assert header(journal)["endpoint"] == base
        guard(workdir, "scenario", "/v1")
        make_image(workdir / "large_1.png", "png", 8192, seed=3)  # the cause, fixed
        retried = run_ingest(["retry-failed", str(journal), "--json"], env=SCENARIO, cwd=workdir)
        assert retried.returncode == 0, retried.stderr
        assert json_events(retried.stdout)[-1]["done"] == 2
        models = {m["id"]: m for m in sim.get("/_sim/scenario/models")["models"]}
        assert len(models["model_demo"]["training_images"]) == 2  # both, on this endpoint
        elsewhere = run_ingest(["retry-failed", str(journal), "--sim"], env=SCENARIO, cwd=workdir)
        assert elsewhere.returncode == 2
        assert (
            f"was made against {base}; this run targets the built-in emulator" in elsewhere.stderr
        )


def test_w6_force_never_turns_one_providers_records_into_anothers(workdir: Path) -> None:
    manifest = "examples/manifest.jsonl"
    first = run_ingest(["run", manifest, "--provider", "novita", "--sim"], env=NOVITA, cwd=workdir)
    assert first.returncode == 0, first.stderr
    journal = "examples/manifest.jsonl.novita.journal"
    written = (workdir / journal).read_bytes()
    other = ["run", manifest, "--provider", "modelhunter", "--sim", "--journal", journal]
    env = ingest_env(MODELHUNTER_API_KEY="anything")
    refused = run_ingest(other, env=env, cwd=workdir)
    assert refused.returncode == 2
    assert "for provider 'novita'; this run is for 'modelhunter'" in refused.stderr
    assert "--force" not in refused.stderr  # not offered for another provider
    forced = run_ingest([*other, "--force"], env=env, cwd=workdir)
    assert forced.returncode == 2, forced.stdout
    assert "done by earlier runs" not in forced.stderr
    assert (workdir / journal).read_bytes() == written
    export = run_ingest(["export", journal, "--format", "provider"], env=env, cwd=workdir)
    assert (
        len(json.loads(export.stdout)["image_dataset_items"]) == 12
    )  # still Novita's, all of them


def test_force_follows_a_moved_manifest_and_rewrites_the_header(workdir: Path) -> None:
    first = run_ingest(
        ["run", "examples/manifest.jsonl", "--provider", "novita", "--sim", "--journal", "j"],
        env=NOVITA,
        cwd=workdir,
    )
    assert first.returncode == 0, first.stderr
    (workdir / "examples/manifest.jsonl").rename(workdir / "examples/moved.jsonl")
    moved = ["run", "examples/moved.jsonl", "--provider", "novita", "--sim", "--journal", "j"]
    refused = run_ingest(moved, env=NOVITA, cwd=workdir)
    assert refused.returncode == 2
    assert "(or --force if only the manifest moved)" in refused.stderr
    forced = run_ingest([*moved, "--force"], env=NOVITA, cwd=workdir)
    assert forced.returncode == 0, forced.stderr
    assert "12 items done by earlier runs" in forced.stderr
    assert header(workdir / "j")["manifest"] == str(workdir / "examples/moved.jsonl")
    # retry-failed now follows the header to the manifest where it is.
    retried = run_ingest(["retry-failed", "j"], env=NOVITA, cwd=workdir)
    assert retried.returncode == 0, retried.stderr
    # Forcing with the endpoint different as well is still refused.
    with sim_process() as sim:
        both = run_ingest(
            [*moved[:4], "--base-url", sim.base_url, "--journal", "j", "--force"],
            env=NOVITA,
            cwd=workdir,
        )
    assert both.returncode == 2 and "built-in emulator" in both.stderr


def test_a_journal_from_before_the_endpoint_was_bound_keeps_working(workdir: Path) -> None:
    first = run_ingest(
        ["run", "examples/manifest.jsonl", "--provider", "novita", "--sim"], env=NOVITA, cwd=workdir
    )
    assert first.returncode == 0, first.stderr
    journal = workdir / "examples/manifest.jsonl.novita.journal"
    head, rest = journal.read_bytes().split(b"\n", 1)
    old = json.loads(head)
    del old["endpoint"]
    journal.write_bytes(json.dumps(old).encode() + b"\n" + rest)
    again = run_ingest(
        ["run", "examples/manifest.jsonl", "--provider", "novita", "--sim"], env=NOVITA, cwd=workdir
    )
    assert again.returncode == 0, again.stderr
    notes = [line for line in again.stderr.splitlines() if "does not record its endpoint" in line]
    assert len(notes) == 1, again.stderr
    assert "this run uses the built-in emulator" in notes[0]
    assert "endpoint" not in header(journal)  # unknown stays unknown: nothing is assumed into it
    shown = run_ingest(["status", str(journal)], env=NOVITA, cwd=workdir)
    assert "endpoint  not recorded (older journal)" in shown.stdout
