"""Test kit of the fault and crash torture suite: providers, the emulator's record, figures.

`spec(name)` says how to run one provider against `ingest sim` in its own
process (key variables, extra flags, the emulator's flags) and how to read
what landed from the emulator's record; a provider without an entry here gets
the generic one (its key variables from `config.DEFAULT_PROVIDERS`, landed
objects from ``/_sim/objects``), so new providers join the parametrized tests.

`verify_run` is the acceptance check every torture run ends with: every file
landed byte-identical, copies beyond the first are counted (and bounded by
the caller), and `ingest status` / `ingest export` agree with the emulator.
`in_flight_at_kill` reads, from a journal left by a killed run, how many
items that run had in flight: the most that may land twice because of it.
`orphans` counts what the provider holds beyond the journal's one remote id
per item, from the emulator's record: copies with bytes, and records that were
acquired and never uploaded to.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ingest.config import DEFAULT_PROVIDERS
from tests.simproc import INGEST, SimProcess, ingest_env, read_journal, run_ingest, sha256_file

SCENARIO_MODEL = "model_torture000000000001"

# Known values for every secret a run may use: a test greps every output for them.
SENTINELS: dict[str, str] = {
    "NOVITA_API_KEY": "sk-SENTINEL-novita-7f3a9c1e5b",
    "MODELHUNTER_API_KEY": "mh-SENTINEL-modelhunter-2d8e4b6a",
    "AUTOENHANCE_API_KEY": "ae-SENTINEL-autoenhance-9c1f3e7d",
    "SCENARIO_API_KEY": "sc-SENTINEL-scenario-key-4a6c8e0b",
    "SCENARIO_API_SECRET": "sc-SENTINEL-scenario-secret-1b3d5f7h",
}

# A signed query value that escaped redaction: hex, base64 or URL-encoded, not REDACTED.
LEAKED_SIGNATURE = re.compile(
    r"(?i)(X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|sig|token)"
    r"=(?!REDACTED)[A-Za-z0-9%/+_.~-]{8,}"
)


def _objects_of(provider: str) -> Callable[[SimProcess], list[tuple[str, str]]]:
    def landed(sim: SimProcess) -> list[tuple[str, str]]:
        return [
            (obj["sha256"], str(obj["remote_id"]))
            for obj in sim.objects()
            if obj.get("provider") == provider
        ]

    return landed


def _scenario_images(sim: SimProcess) -> list[tuple[str, str]]:
    models = {m["id"]: m for m in sim.get("/_sim/scenario/models")["models"]}
    model = models.get(SCENARIO_MODEL, {"training_images": []})
    return [(image["sha256"], str(image["id"])) for image in model["training_images"]]


@dataclass(frozen=True)
class Spec:
    """How to run one provider against the emulator, and where its items land."""

    name: str
    keys: dict[str, str]  # environment variable -> value
    landed: Callable[[SimProcess], list[tuple[str, str]]]  # (sha256, remote id) per copy
    flags: tuple[str, ...] = ()  # extra `ingest run` flags
    sim_flags: tuple[str, ...] = ()  # extra `ingest sim` flags
    base_path: str = ""  # the API's prefix under the emulator's address
    # The provider's own promise after a finished run (beyond bytes landing), if any.
    check: Callable[[SimProcess, Path], None] | None = None
    # (remote id, whether its bytes landed) of every record the provider holds.
    held: Callable[[SimProcess, Path], list[tuple[str, bool]]] | None = None

    def env(self, **override: str) -> dict[str, str]:
        return ingest_env(**{**self.keys, **override})

    def run_args(self, manifest: Path, sim: SimProcess, *extra: str) -> list[str]:
        return [
            "run",
            str(manifest),
            "--provider",
            self.name,
            "--base-url",
            sim.base_url + self.base_path,
            *self.flags,
            *extra,
        ]

    def journal(self, manifest: Path) -> Path:
        return manifest.with_name(f"{manifest.name}.{self.name}.journal")


def _keys(name: str) -> dict[str, str]:
    settings = DEFAULT_PROVIDERS[name]
    names = [v for field in settings.key_envs if (v := getattr(settings, field))]
    return {v: SENTINELS.get(v, f"SENTINEL-{v.lower()}-0000") for v in names}


def _exported(journal: Path) -> list[dict[str, Any]]:
    done = read_journal(["export", str(journal)])
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _modelhunter_completed_once(sim: SimProcess, journal: Path) -> None:
    """Each item is a completed file (the one the journal names); no image completed twice."""
    files = {f["file_id"]: f for f in sim.get("/_sim/modelhunter/files")["files"]}
    sha = {str(obj["remote_id"]): obj["sha256"] for obj in sim.objects()}
    completed = [sha[fid] for fid, f in files.items() if f["completed"]]
    assert len(completed) == len(set(completed)), "an image was completed twice"
    for row in _exported(journal):
        assert files[row["remote_id"]]["completed"], row


def _issued_of(provider: str) -> Callable[[SimProcess, Path], list[tuple[str, bool]]]:
    """Every remote id the provider's API handed out, and whether bytes landed under it."""

    def held(sim: SimProcess, journal: Path) -> list[tuple[str, bool]]:
        landed = {str(obj["remote_id"]) for obj in sim.objects() if obj["provider"] == provider}
        issued = sim.get("/_sim/assets")["assets"]
        ids = [str(a["remote_id"]) for a in issued if a["provider"] == provider]
        return [(remote_id, remote_id in landed) for remote_id in ids]

    return held


def _order_images(sim: SimProcess, journal: Path) -> list[dict[str, Any]]:
    """The images of the journal's Autoenhance order, as the API lists them."""
    header = json.loads(journal.read_text().splitlines()[0])
    request = urllib.request.Request(
        f"{sim.base_url}/v3/orders/{header['bind']['order_id']}",
        headers={"x-api-key": SENTINELS["AUTOENHANCE_API_KEY"]},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return list(json.loads(resp.read())["images"])


def _autoenhance_held(sim: SimProcess, journal: Path) -> list[tuple[str, bool]]:
    """The order's images: a deleted one is no longer held; "waiting" ones never got bytes."""
    return [(i["image_id"], i["status"] != "waiting") for i in _order_images(sim, journal)]


def _scenario_held(sim: SimProcess, journal: Path) -> list[tuple[str, bool]]:
    """Scenario's assets (each created with its bytes): the model's, then the others unnamed."""
    listed = sim.get("/_sim/scenario/models")
    ids = [image["id"] for m in listed["models"] for image in m["training_images"]]
    return [(i, True) for i in ids] + [("", True)] * (listed["assets"] - len(ids))


def _autoenhance_one_order(sim: SimProcess, journal: Path) -> None:
    """Every done image, and every copy a killed run landed, is in the journal's one order."""
    header = json.loads(journal.read_text().splitlines()[0])
    order_id = header["bind"]["order_id"]
    rows = _exported(journal)
    assert {row["order_id"] for row in rows} == {order_id}
    listed = {image["image_id"] for image in _order_images(sim, journal)}
    assert {row["remote_id"] for row in rows} <= listed
    assert {str(obj["remote_id"]) for obj in sim.objects()} <= listed


def spec(name: str) -> Spec:
    """The run recipe of provider `name` (generic for providers not listed here)."""
    if name == "scenario":
        return Spec(
            name,
            _keys(name),
            _scenario_images,
            flags=("--model-id", SCENARIO_MODEL),
            sim_flags=("--scenario-model", SCENARIO_MODEL),
            base_path="/v1",
            held=_scenario_held,
        )
    if name == "autoenhance":
        return Spec(
            name,
            _keys(name),
            _objects_of(name),
            sim_flags=("--autoenhance-name-limit", "0"),
            check=_autoenhance_one_order,
            held=_autoenhance_held,
        )
    if name == "modelhunter":
        return Spec(
            name,
            _keys(name),
            _objects_of(name),
            check=_modelhunter_completed_once,
            held=_issued_of(name),
        )
    return Spec(name, _keys(name), _objects_of(name), held=_issued_of(name))


@dataclass(frozen=True)
class Verdict:
    """What a finished run left behind, against the emulator's record."""

    items: int
    lost: int  # items with no byte-identical copy in the emulator
    duplicates: int  # copies beyond the first, over all items
    status: dict[str, Any]
    copies: dict[str, int] = field(default_factory=dict)  # item key -> copies that landed

    @property
    def most_copies(self) -> int:
        """Copies of the item that landed most often."""
        return max(self.copies.values(), default=0)


def verify_run(s: Spec, sim: SimProcess, paths: list[Path], journal: Path) -> Verdict:
    """Check a finished run against the emulator; return the figures for the caller to bound.

    Asserts that every file landed byte-identical, that the journal's remote id
    of each item is one of the copies holding its bytes, and that `ingest
    status` counts exactly the items the emulator holds.
    """
    copies: dict[str, list[str]] = {}
    for digest, remote_id in s.landed(sim):
        copies.setdefault(digest, []).append(remote_id)
    exported = read_journal(["export", str(journal)])
    assert exported.returncode == 0, exported.stderr
    remote = {
        row["key"]: str(row["remote_id"]) for row in map(json.loads, exported.stdout.splitlines())
    }
    lost = duplicates = 0
    per_key: dict[str, int] = {}
    digests = [sha256_file(path) for path in paths]
    for index, digest in enumerate(digests):
        found = copies.get(digest, [])
        if not found:
            lost += 1
            continue
        duplicates += len(found) - 1
        key = f"item-{index:06d}"
        per_key[key] = len(found)
        assert remote.get(key) in found, f"{key}: journal says {remote.get(key)}, emulator {found}"
    status = read_journal(["status", str(journal), "--json"])
    assert status.returncode == 0, status.stderr
    info: dict[str, Any] = json.loads(status.stdout)
    distinct_landed = sum(1 for digest in digests if digest in copies)
    assert info["done"] == distinct_landed, (info, distinct_landed)
    return Verdict(len(paths), lost, duplicates, info, per_key)


@dataclass(frozen=True)
class Orphans:
    """What the provider holds beyond the journal's one remote id per done item."""

    landed: int  # records holding bytes the journal does not name: uploads made twice
    empty: int  # records acquired and never uploaded to (an Autoenhance "waiting" image)

    @property
    def total(self) -> int:
        return self.landed + self.empty


def orphans(s: Spec, sim: SimProcess, journal: Path) -> Orphans:
    """The provider's records that no done item of the journal names, from the emulator."""
    named = {str(row["remote_id"]) for row in _exported(journal)}
    held = (s.held or _issued_of(s.name))(sim, journal)
    stray = [landed for remote_id, landed in held if remote_id not in named]
    return Orphans(landed=sum(stray), empty=len(stray) - sum(stray))


def journal_records(journal: Path) -> Iterator[dict[str, Any]]:
    """Every complete record of a journal (header excluded), a torn last line skipped."""
    with journal.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if number == 1 or not line.endswith(b"\n"):
                continue
            rec = orjson.loads(line)
            if isinstance(rec, dict):
                yield rec


def in_flight_at_kill(journal: Path) -> tuple[int | None, int]:
    """(pid of the last run, how many items it had in flight): see `in_flight_keys`."""
    pid, keys = in_flight_keys(journal)
    return pid, len(keys)


def in_flight_keys(journal: Path) -> tuple[int | None, set[str]]:
    """(pid of the last run, items that run had started and not finished), from a journal.

    An item is in flight when its last record in the last run is `acq` or
    `up`, or when it entered that run waiting for its finalize step (`up`) and
    got no later record. Only these can land a second time when the run is
    redone. A caller that finds another pid than the one it killed knows that
    process never started its run (nothing of it was in flight).
    """
    if not journal.exists():
        return None, set()
    state: dict[str, str] = {}
    pid: int | None = None
    touched: set[str] = set()
    for rec in journal_records(journal):
        if rec.get("s") == "run":
            pid = rec.get("pid")
            touched.clear()
            continue
        key = rec.get("k")
        if isinstance(key, str):
            state[key] = str(rec.get("s"))
            touched.add(key)
    in_flight = {
        key
        for key, last in state.items()
        if (key in touched and last in ("acq", "up")) or (key not in touched and last == "up")
    }
    return pid, in_flight


def done_records(journal: Path) -> int:
    """How many `done` records a journal holds so far (cheap enough to poll)."""
    try:
        return journal.read_bytes().count(b'"s":"done"')
    except FileNotFoundError:
        return 0


def popen_ingest(args: list[str], *, env: dict[str, str], **kwargs: Any) -> subprocess.Popen[str]:
    """A real `ingest` process (the caller waits for it and closes its pipes)."""
    return subprocess.Popen([*INGEST, *args], env=env, text=True, **kwargs)


def config(path: Path, **run: object) -> Path:
    """Write a config file with these `[run]` keys; return its path."""
    lines = ["[run]"]
    for key, value in run.items():
        lines.append(f"{key} = {str(value).lower() if isinstance(value, bool) else value!r}")
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Finished:
    """A finished `ingest run --json` and what the emulator recorded of it."""

    proc: subprocess.CompletedProcess[str]
    events: list[dict[str, Any]]
    summary: dict[str, Any]
    stats: dict[str, Any]
    verdict: Verdict | None


def summary_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The `summary` event of a `--json` run (notes may follow it)."""
    return next(e for e in reversed(events) if e["event"] == "summary")


def finish(
    s: Spec,
    sim: SimProcess,
    manifest: Path,
    paths: list[Path],
    *args: str,
    verify: bool = True,
) -> Finished:
    """Run `ingest run --json` to its end against `sim` and collect the figures."""
    from tests.simproc import json_events

    done = run_ingest(s.run_args(manifest, sim, "--json", *args), env=s.env())
    events = json_events(done.stdout)
    assert "Traceback" not in done.stderr, done.stderr
    summary = summary_of(events)
    verdict = verify_run(s, sim, paths, s.journal(manifest)) if verify else None
    return Finished(done, events, summary, sim.stats(), verdict)


def api_calls(stats: dict[str, Any]) -> int:
    """Every API request the emulator answered."""
    return sum(sum(by_status.values()) for by_status in stats["api_requests"].values())


# `ingest repair` until it is wired into `ingest.cli.main.COMMANDS`.
_REPAIR = (
    "import argparse, sys; from ingest.cli import repair; "
    "p = argparse.ArgumentParser(prog='ingest'); s = p.add_subparsers(); repair.register(s); "
    "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
)


def ingest_repair(journal: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """`ingest repair JOURNAL FLAGS…` as a user would run it."""
    from ingest.cli.main import COMMANDS

    env = ingest_env()
    if "repair" in COMMANDS:
        return run_ingest(["repair", str(journal), *flags], env=env)
    return subprocess.run(
        [sys.executable, "-c", _REPAIR, "repair", str(journal), *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
