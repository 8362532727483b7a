"""What a new user tried, replayed through the real command line (newcomer findings W5, U1,
U6, U8, R3, R7, K1): symlinked and empty folders, the early total, stdin, a content type that
is not a MIME type, short CSV rows, and counts in the singular."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import orjson

from tests.images import make_dataset, make_image, touch
from tests.simproc import ingest_cmd, ingest_env, run_ingest

VALIDATE = ("--provider", "novita")


def test_validate_follows_a_symlinked_subfolder(tmp_path: Path) -> None:
    sl = tmp_path / "sl"
    make_dataset(sl / "real", 4, max_size=4096, seed=3)
    (sl / "top").mkdir()
    (sl / "top" / "linked").symlink_to("../real", target_is_directory=True)
    done = run_ingest(["validate", str(sl / "top"), *VALIDATE], env=ingest_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 entries for novita: 4 ok" in done.stdout
    assert "0 problems" in done.stdout


def test_a_folder_with_no_image_is_refused_by_validate_run_and_dry_run(
    tmp_path: Path,
) -> None:
    photos = tmp_path / "photos"
    touch(photos, "readme.txt", "Thumbs.db", "notes/todo.md")
    (photos / "notes" / "back").symlink_to("..", target_is_directory=True)
    why = (
        "no images found (skipped 3 non-image files (Thumbs.db, notes/todo.md, readme.txt), "
        "1 symlinked loop): nothing to upload"
    )
    # Nothing to upload is refused (exit 2) as an empty manifest is (fixes8a), not exit 1.
    checked = run_ingest(["validate", str(photos), *VALIDATE], env=ingest_env())
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert checked.stderr == f"ingest: error: {photos}: {why}\n"

    ran = run_ingest(["run", str(photos), *VALIDATE, "--sim", "--plain"], env=ingest_env())
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert ran.stderr == f"ingest: error: {photos}: {why}\n"
    assert not (photos / ".ingest").exists()  # no journal written

    # The dry run of the same command.
    dry = run_ingest(["run", str(photos), *VALIDATE, "--sim", "--dry-run"], env=ingest_env())
    assert dry.returncode == 2
    assert why in dry.stderr


def test_validate_names_the_skipped_files_once(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    make_image(photos / "a.png", "png", 200, seed=1)
    touch(photos, "readme.txt")
    done = run_ingest(["validate", str(photos), *VALIDATE], env=ingest_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("skipped 1 non-image file (readme.txt)") == 1
    assert "1 entry for novita: 1 ok" in done.stdout


def test_a_manifest_on_stdin_says_it_is_not_supported_and_why(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png", "png", 200, seed=1)
    listing = f"{tmp_path / 'a.png'}\n"
    for command in (["run", "-", *VALIDATE, "--sim"], ["validate", "/dev/stdin", *VALIDATE]):
        done = subprocess.run(
            ingest_cmd(*command),
            input=listing,  # a pipe, as with `find … | ingest run -`
            env=ingest_env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith(f"ingest: error: {command[1]}: ")  # as given, not /proc/…/pipe:[N]
        assert "a manifest on standard input is not supported" in line
        assert "reads the manifest file again" in line and "journal" in line
        assert "Traceback" not in done.stderr


def test_a_content_type_that_is_not_a_mime_type_says_what_is_expected(tmp_path: Path) -> None:
    make_image(tmp_path / "a.jpg", "jpeg", 300, seed=2)
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(orjson.dumps({"path": "a.jpg", "content_type": "jpeg"}) + b"\n")
    done = run_ingest(["validate", str(manifest), *VALIDATE], env=ingest_env())
    assert done.returncode == 1
    assert (
        "declared content_type 'jpeg' is not a MIME type; expected one such as image/jpeg"
        in done.stdout
    )


def test_short_csv_rows_upload(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png", "png", 200, seed=1)
    make_image(tmp_path / "b.png", "png", 200, seed=2)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,id\na.png\nb.png,bee\n")
    done = run_ingest(["validate", str(manifest), *VALIDATE], env=ingest_env())
    assert done.returncode == 0, done.stdout
    assert "2 entries for novita: 2 ok" in done.stdout


def test_counts_of_one_are_singular(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png", "png", 200, seed=1)
    good = tmp_path / "good.txt"
    good.write_text("a.png\n")
    checked = run_ingest(["validate", str(good), *VALIDATE], env=ingest_env())
    assert "1 entry for novita: 1 ok" in checked.stdout
    ran = run_ingest(["run", str(good), *VALIDATE, "--sim", "--plain"], env=ingest_env())
    assert ran.returncode == 0, ran.stderr
    assert "uploaded 1 file (" in ran.stderr
    bad = tmp_path / "bad.txt"
    bad.write_text("missing.png\n")
    checked = run_ingest(["validate", str(bad), *VALIDATE], env=ingest_env())
    assert re.search(r"1 entry for novita: 0 ok .*, 1 problem$", checked.stdout, re.MULTILINE)
    ran = run_ingest(["run", str(bad), *VALIDATE, "--sim", "--plain"], env=ingest_env())
    assert ran.returncode == 1
    assert "1 item not uploaded (0 failed, 1 rejected, 0 unfinished)" in ran.stderr
    fresh = str(tmp_path / "fresh.journal")  # the run above left its journal beside `good`
    dry = run_ingest(
        ["run", str(good), *VALIDATE, "--dry-run", "--journal", fresh], env=ingest_env()
    )
    assert "would upload 1 file (" in dry.stderr


def test_the_first_status_line_of_a_1000_line_run_shows_the_total(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png", "png", 300, seed=1)
    manifest = tmp_path / "m.jsonl"
    lines = (orjson.dumps({"path": "a.png", "id": f"i{n:04d}"}) for n in range(1_000))
    manifest.write_bytes(b"\n".join(lines) + b"\n")
    done = run_ingest(
        [
            "run",
            str(manifest),
            *VALIDATE,
            "--sim",
            "--plain",
            "--status-interval-s",
            "0.2",
            "--put-concurrency",
            "32",
            # a floor under the run's length (~3 s), so that status lines come before its end
            "--sim-faults",
            "seed=1,put.latency=0.1",
        ],
        env=ingest_env(),
    )
    assert done.returncode == 0, done.stderr
    status = [line for line in done.stderr.splitlines() if line.startswith("done ")]
    assert status, done.stderr
    assert re.match(r"done \d+/~?1000 \(", status[0]), status[0]
    assert all(re.match(r"done \d+/~?1000 ", line) for line in status)
    assert "journal" in done.stderr and "1000 done of 1000" in done.stderr
