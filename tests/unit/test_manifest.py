"""Tests for ingest.manifest: the four formats, line numbers, bad lines, whole-file errors."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import ManifestError
from ingest.item import Item
from ingest.manifest import ManifestFormat, manifest_format, read_manifest
from ingest.manifest import lines as manifest_lines
from tests.images import make_image, touch

Result = Item | ManifestError


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def read(path: Path, fmt: ManifestFormat | None = None) -> list[Result]:
    return list(read_manifest(path, fmt))


def summary(results: list[Result]) -> list[tuple[int | None, str]]:
    """(line, key) for items and (line, "ERR: reason") for errors."""
    return [
        (r.line, f"ERR: {r.reason}") if isinstance(r, ManifestError) else (r.line, r.key)
        for r in results
    ]


def errors(results: list[Result]) -> dict[int | None, str]:
    return {r.line: r.reason for r in results if isinstance(r, ManifestError)}


def items(results: list[Result]) -> list[Item]:
    return [r for r in results if isinstance(r, Item)]


# --- choosing a format -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("m.jsonl", "jsonl"),
        ("m.ndjson", "jsonl"),
        ("m.json", "jsonl"),
        ("M.JSONL", "jsonl"),
        ("m.csv", "csv"),
        ("m.CSV", "csv"),
        ("m.txt", "list"),
        ("m.lst", "list"),
        ("manifest", "list"),
        ("m.tsv", "list"),
    ],
)
def test_format_by_suffix(tmp_path: Path, name: str, fmt: str) -> None:
    assert manifest_format(tmp_path / name) == fmt


def test_format_of_directory_is_folder(tmp_path: Path) -> None:
    assert manifest_format(tmp_path) == "folder"
    (tmp_path / "looks.jsonl").mkdir()
    assert manifest_format(tmp_path / "looks.jsonl") == "folder"


def test_format_override(tmp_path: Path) -> None:
    path = write(tmp_path / "m.txt", '{"path": "a.png", "id": "x"}\n')
    assert summary(read(path, "jsonl")) == [(1, "x")]
    assert summary(read(path, "list")) == [(1, '{"path": "a.png", "id": "x"}')]


def test_unknown_format_override_raises(tmp_path: Path) -> None:
    path = write(tmp_path / "m.txt", "a.png\n")
    with pytest.raises(ManifestError, match="unknown manifest format 'yaml'"):
        read_manifest(path, "yaml")  # type: ignore[arg-type]


# --- JSON lines --------------------------------------------------------------------------


def test_jsonl_all_fields(tmp_path: Path) -> None:
    entry = {
        "path": "img/a.png",
        "id": "a1",
        "name": "A.png",
        "content_type": "image/png",
        "caption": "a cat",
        "metadata": {"tags": ["x", 1], "score": 0.5},
    }
    path = write(tmp_path / "m.jsonl", orjson.dumps(entry) + b"\n")
    [item] = read(path)
    assert item == Item(
        key="a1",
        path=tmp_path / "img" / "a.png",
        line=1,
        name="A.png",
        content_type="image/png",
        caption="a cat",
    )
    assert isinstance(item, Item)
    assert item.metadata == {"tags": ["x", 1], "score": 0.5}


def test_jsonl_minimal_entry_and_int_id(tmp_path: Path) -> None:
    path = write(tmp_path / "m.jsonl", '{"path": "a.png"}\n{"path": "b.png", "id": 7}\n')
    first, second = items(read(path))
    assert (first.key, first.name, first.caption, first.metadata) == ("a.png", None, None, None)
    assert second.key == "7"


def test_jsonl_nulls_are_absent(tmp_path: Path) -> None:
    line = '{"path": "a.png", "id": null, "name": null, "caption": null, "metadata": null}\n'
    [item] = items(read(write(tmp_path / "m.jsonl", line)))
    assert (item.key, item.name, item.caption, item.metadata) == ("a.png", None, None, None)


def test_relative_paths_resolve_against_manifest_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest_dir = tmp_path / "data" / "sets"
    lines = [
        {"path": "a.png"},
        {"path": "sub/b.png"},
        {"path": "../c.png"},
        {"path": "/abs/d.png"},
    ]
    path = write(manifest_dir / "m.jsonl", b"".join(orjson.dumps(e) + b"\n" for e in lines))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    relative = Path(os.path.relpath(path, elsewhere))  # the manifest named relative to the cwd
    got = items(read(relative))
    assert [i.path for i in got] == [
        manifest_dir / "a.png",
        manifest_dir / "sub" / "b.png",
        manifest_dir / ".." / "c.png",
        Path("/abs/d.png"),
    ]
    assert all(i.path.is_absolute() for i in got)
    # the key is the path exactly as written
    assert [i.key for i in got] == ["a.png", "sub/b.png", "../c.png", "/abs/d.png"]


def test_home_in_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    [item] = items(read(write(tmp_path / "m.txt", "~/pics/a.png\n")))
    assert item.path == tmp_path / "home" / "pics" / "a.png"
    assert item.key == "~/pics/a.png"


def test_jsonl_blank_and_comment_lines_keep_physical_numbers(tmp_path: Path) -> None:
    text = (
        "# a comment\n"
        "\n"
        '{"path": "a.png"}\n'
        "   \n"
        '   # indented comment {"path": "no.png"}\n'
        '{"path": "b.png"}\r\n'
        "\t\n"
        '{"path": "c.png"}'  # no final newline
    )
    assert summary(read(write(tmp_path / "m.jsonl", text))) == [
        (3, "a.png"),
        (6, "b.png"),
        (8, "c.png"),
    ]


def test_jsonl_utf8_bom_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path / "m.jsonl", b'\xef\xbb\xbf{"path": "a.png"}\n')
    assert summary(read(path)) == [(1, "a.png")]


BAD_JSONL_LINES: list[tuple[str | bytes, str]] = [
    ('{"path": "x.png"', "invalid JSON at column"),
    ('{"path": "x.png"} trailing', "invalid JSON"),
    ("not json at all", "invalid JSON at column 1"),
    ('"just a string"', 'expected a JSON object with a "path" key, got a string'),
    ("42", "got a number"),
    ("null", "got null"),
    ('{"id": "x"}', 'missing required key "path"'),
    ('{"path": null}', '"path" must be a string, got null'),
    ('{"path": 5}', '"path" must be a string, got a number'),
    ('{"path": ["a.png"]}', '"path" must be a string, got an array'),
    ('{"path": ""}', "empty path"),
    ('{"path": "   "}', "empty path"),
    ('{"path": "a\\u0000b.png"}', "NUL"),
    ('{"path": "ftp://example.com/a.png"}', "path is a URL ('ftp://example.com/a.png')"),
    ('{"path": "gs://bucket/a.png"}', "path is a URL"),
    ('{"path": "data:image/png;base64,AAAA"}', "path is a URL"),
    ('{"path": "a.png", "id": true}', '"id" must be a string or an integer, got a boolean'),
    ('{"path": "a.png", "id": 1.5}', '"id" must be a string or an integer, got a number'),
    ('{"path": "a.png", "id": {}}', "got an object"),
    ('{"path": "a.png", "id": ""}', 'empty "id"'),
    ('{"path": "a.png", "name": 3}', '"name" must be a string, got a number'),
    ('{"path": "a.png", "caption": ["x"]}', '"caption" must be a string, got an array'),
    ('{"path": "a.png", "content_type": false}', '"content_type" must be a string'),
    ('{"path": "a.png", "metadata": "x"}', '"metadata" must be an object, got a string'),
    ('{"path": "a.png", "metadata": [1]}', '"metadata" must be an object, got an array'),
    (b'{"path": "caf\xe9.png"}', "not valid UTF-8 (byte e9 at column 14)"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_JSONL_LINES)
def test_jsonl_bad_line_is_reported_and_reading_goes_on(
    tmp_path: Path, bad: str | bytes, reason: str
) -> None:
    bad_bytes = bad.encode() if isinstance(bad, str) else bad
    text = b'{"path": "first.png"}\n\n' + bad_bytes + b'\n# c\n{"path": "last.png"}\n'
    path = write(tmp_path / "m.jsonl", text)
    results = read(path)
    assert [r.line for r in results] == [1, 3, 5]
    error = results[1]
    assert isinstance(error, ManifestError)
    assert reason in error.reason
    assert error.source == str(path)
    assert str(error).startswith(f"{path}:3: ")
    assert [i.key for i in items(results)] == ["first.png", "last.png"]


def test_non_utf8_line_shows_bad_bytes_escaped(tmp_path: Path) -> None:
    path = write(tmp_path / "m.jsonl", b'{"path": "ok.png"}\n{"path": "\xff\xfe.png"}\n')
    reason = errors(read(path))[2]
    assert reason.startswith("not valid UTF-8")
    assert '{"path": "\\xff\\xfe.png"}' in reason


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"file": "a.png"}, "unknown key 'file' (did you mean 'path'?)"),
        ({"Path": "a.png"}, "unknown key 'Path' (did you mean 'path'?)"),
        ({"pth": "a.png"}, "unknown key 'pth' (did you mean 'path'?)"),
        ({"image": "a.png"}, "did you mean 'path'?"),
        ({"path": "a.png", "captoin": "x"}, "unknown key 'captoin' (did you mean 'caption'?)"),
        ({"path": "a.png", "prompt": "x"}, "unknown key 'prompt' (did you mean 'caption'?)"),
        ({"path": "a.png", "mime_type": "x"}, "(did you mean 'content_type'?)"),
        ({"path": "a.png", "content-type": "x"}, "(did you mean 'content_type'?)"),
        ({"path": "a.png", "meta": {}}, "(did you mean 'metadata'?)"),
        ({"path": "a.png", "key": "k"}, "unknown key 'key' (did you mean 'id'?)"),
        # filename means the path when there is none, else the display name
        ({"filename": "a.png"}, "unknown key 'filename' (did you mean 'path'?)"),
        ({"path": "a.png", "filename": "A"}, "unknown key 'filename' (did you mean 'name'?)"),
        ({"path": "a.png", "zzz": 1}, "unknown key 'zzz'; allowed keys: path, id, name"),
    ],
)
def test_unknown_keys_are_named_with_a_suggestion(
    tmp_path: Path, entry: dict[str, Any], expected: str
) -> None:
    path = write(tmp_path / "m.jsonl", orjson.dumps(entry) + b"\n")
    assert expected in errors(read(path))[1]


def test_several_unknown_keys_are_all_named(tmp_path: Path) -> None:
    path = write(tmp_path / "m.jsonl", '{"path": "a.png", "file": 1, "blah": 2}\n')
    reason = errors(read(path))[1]
    assert reason.startswith("unknown keys 'file', 'blah';")


def test_duplicate_ids_report_the_first_line(tmp_path: Path) -> None:
    text = (
        '{"path": "a.png", "id": "x"}\n'
        '{"path": "b.png", "id": "y"}\n'
        '{"path": "c.png", "id": "x"}\n'
        "\n"
        '{"path": "d.png", "id": "x"}\n'
        '{"path": "b.png"}\n'
        '{"path": "b.png"}\n'
        '{"path": "e.png", "id": 5}\n'
        '{"path": "f.png", "id": "5"}\n'
    )
    assert summary(read(write(tmp_path / "m.jsonl", text))) == [
        (1, "x"),
        (2, "y"),
        (3, "ERR: duplicate id 'x' (first at line 1)"),
        (5, "ERR: duplicate id 'x' (first at line 1)"),
        (6, "b.png"),
        (7, "ERR: duplicate path 'b.png' (first at line 6)"),
        (8, "5"),
        (9, "ERR: duplicate id '5' (first at line 8)"),
    ]


def test_a_bad_line_does_not_claim_its_key(tmp_path: Path) -> None:
    text = '{"path": 1, "id": "x"}\n{"path": "a.png", "id": "x"}\n'
    assert summary(read(write(tmp_path / "m.jsonl", text)))[1] == (2, "x")


def test_overlong_line_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest_lines, "MAX_LINE_BYTES", 64)
    long_line = '{"path": "' + "x" * 200 + '.png"}'
    text = f'{{"path": "a.png"}}\n{long_line}\n{{"path": "b.png"}}\n{long_line}'
    assert summary(read(write(tmp_path / "m.jsonl", text))) == [
        (1, "a.png"),
        (2, "ERR: line longer than 64 bytes; skipped"),
        (3, "b.png"),
        (4, "ERR: line longer than 64 bytes; skipped"),
    ]


def test_reading_is_lazy(tmp_path: Path) -> None:
    path = write(tmp_path / "m.jsonl", '{"path": "a.png"}\n{"path": "b.png"}\n')
    it = read_manifest(path)
    assert next(it).line == 1
    it.close()  # closes the file; nothing else to check beyond no ResourceWarning


# --- whole-manifest errors ---------------------------------------------------------------


def test_missing_manifest_raises_up_front(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="manifest not found") as info:
        read_manifest(tmp_path / "nope.jsonl")  # not iterated: the call itself raises
    assert info.value.source == str(tmp_path / "nope.jsonl")
    assert info.value.line is None


def test_missing_folder_raises_up_front(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="folder not found"):
        read_manifest(tmp_path / "nope", "folder")


def test_directory_forced_as_file_format_raises(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="is a directory"):
        read_manifest(tmp_path, "jsonl")


def test_file_forced_as_folder_raises(tmp_path: Path) -> None:
    path = write(tmp_path / "m.txt", "a.png\n")
    with pytest.raises(ManifestError, match="not a folder"):
        read_manifest(path, "folder")


def test_unreadable_manifest_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "m.jsonl", '{"path": "a.png"}\n')
    real_open = open

    def deny(file: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(file) == path:
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(ManifestError, match="cannot read the manifest: permission denied"):
        read_manifest(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a mode-000 file")
def test_unreadable_manifest_raises_chmod(tmp_path: Path) -> None:
    path = write(tmp_path / "m.txt", "a.png\n")
    path.chmod(0)
    with pytest.raises(ManifestError, match="permission denied"):
        read_manifest(path)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("m.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(40), "looks like"),
        ("m.lst", b"\x00\x01\x02binary", "not a text manifest"),
        ("m.jsonl", b"\x1f\x8b\x08\x00rest", "gzip-compressed data; decompress it first"),
        ("m.csv", b"PK\x03\x04rest", "zip archive (a spreadsheet? export it as CSV)"),
        # Newcomer7: these two said "export it as JSON lines or CSV" / "binary data starting
        # 73 2f 30", though ingest reads Parquet files and tars itself (a HF cache blob, -f list).
        ("blob", b"PAR1\x15\x04" + bytes(60), "name it *.parquet or pass --format parquet"),
        ("m.lst", b"s/000.jpg".ljust(257, b"\0") + b"ustar\x0000", "a tar archive; ingest reads"),
        ("m.txt", b"%PDF-1.7\n...", "PDF document"),
        ("m.jsonl", "{}".encode("utf-16"), "UTF-16 encoded; save it as UTF-8"),
        ("m.json", b'[{"path": "a.png"}]\n', "JSON array"),
        ("m.json", b'\n# c\n  [\n {"path": "a.png"}\n]\n', "JSON array"),
        ("m.json", b'{\n  "path": "a.png"\n}\n', "pretty-printed JSON"),
    ],
)
def test_wrong_kind_of_file_raises_up_front(
    tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    path = write(tmp_path / name, data)
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert message in info.value.reason
    assert info.value.line is None


def test_an_image_passed_as_manifest_says_so(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    make_image(path, "png", 1000, seed=1)
    with pytest.raises(ManifestError, match="not a text manifest: the file looks like"):
        read_manifest(path)


@pytest.mark.parametrize("first", ["BMW_front.png", "PAR1_scan.png", "GIF89a.png", "%PDF.png"])
def test_text_that_starts_like_a_magic_number_is_still_text(tmp_path: Path, first: str) -> None:
    path = write(tmp_path / "m.txt", f"{first}\nb.png\n")
    assert summary(read(path)) == [(1, first), (2, "b.png")]


def test_latin1_lines_early_in_a_list_are_per_line_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "m.txt", b"caf\xe9.png\nb.png\nna\xefve.png\n")
    assert [r.line for r in read(path) if isinstance(r, ManifestError)] == [1, 3]


@pytest.mark.parametrize("name", ["-", "pipe:[93640]"])  # `-`; /dev/stdin as a pipe resolves so
def test_stdin_is_refused_saying_why(tmp_path: Path, name: str) -> None:
    with pytest.raises(ManifestError, match="standard input is not supported") as caught:
        read_manifest(tmp_path / name)
    assert "journal" in caught.value.reason


def test_a_run_names_a_pipe_as_it_was_given_not_as_it_resolves(tmp_path: Path) -> None:
    """`cat m | ingest run /dev/stdin` said '/proc/PID/fd/pipe:[N]: …' (the run resolved
    the path first); /dev/fd/N of a pipe is the same case, in process."""
    import ingest

    read_end, write_end = os.pipe()
    try:
        given = f"/dev/fd/{read_end}"
        with pytest.raises(ManifestError) as caught:
            ingest.upload_sync(given, provider="novita", sim=True, journal=tmp_path / "j")
    finally:
        os.close(read_end)
        os.close(write_end)
    assert str(caught.value).startswith(f"{given}: this is a pipe, not a file; a manifest on")
    assert not (tmp_path / "j").exists()  # refused before any journal: a second run says so too


def test_a_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "m.jsonl"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer for ever
    with pytest.raises(ManifestError, match="this is a pipe, not a file; a manifest on standard"):
        read_manifest(fifo)


def test_a_file_named_dash_is_read(tmp_path: Path) -> None:
    write(tmp_path / "-", "a.png\n")
    assert [i.key for i in items(read(tmp_path / "-"))] == ["a.png"]


def test_empty_manifest_yields_nothing(tmp_path: Path) -> None:
    assert read(write(tmp_path / "m.jsonl", b"")) == []
    assert read(write(tmp_path / "m.txt", b"\n# only a comment\n")) == []


# --- CSV ---------------------------------------------------------------------------------


def test_csv_columns_and_metadata(tmp_path: Path) -> None:
    text = (
        " Path ,ID,Name, Content_Type ,caption,Style,score\n"
        "a.png,1,A,image/png,a cat,oil,0.9\n"
        "sub/b.png,,,,,,\n"
    )
    first, second = items(read(write(tmp_path / "m.csv", text)))
    assert first == Item(
        key="1",
        path=tmp_path / "a.png",
        line=2,
        name="A",
        content_type="image/png",
        caption="a cat",
    )
    assert first.metadata == {"Style": "oil", "score": "0.9"}
    # empty optional cells are absent; the key falls back to the path as written
    assert (second.key, second.path, second.name, second.caption) == (
        "sub/b.png",
        tmp_path / "sub" / "b.png",
        None,
        None,
    )
    assert second.metadata == {"Style": "", "score": ""}


def test_csv_path_only(tmp_path: Path) -> None:
    [item] = items(read(write(tmp_path / "m.csv", "path\na.png\n")))
    assert (item.key, item.line, item.metadata) == ("a.png", 2, None)


def test_csv_header_names_with_dashes_and_spaces(tmp_path: Path) -> None:
    [item] = items(read(write(tmp_path / "m.csv", "PATH,Content-Type\na.png,image/png\n")))
    assert item.content_type == "image/png"


def test_csv_line_numbers_with_quoted_multiline_fields(tmp_path: Path) -> None:
    text = (
        "path,caption\n"  # 1
        'a.png,"one\n'  # 2
        "two\n"  # 3
        'three"\n'  # 4
        "\n"  # 5
        "b.png,plain\n"  # 6
        '"c\n'  # 7
        'd.png","x, ""quoted"""\r\n'  # 8
        ",\n"  # 9 (an all-empty row: skipped)
        "e.png,last"  # 10, no final newline
    )
    results = read(write(tmp_path / "m.csv", text))
    assert summary(results) == [(2, "a.png"), (6, "b.png"), (7, "c\nd.png"), (10, "e.png")]
    assert [i.caption for i in items(results)] == [
        "one\ntwo\nthree",
        "plain",
        'x, "quoted"',
        "last",
    ]


def test_csv_wrong_field_count_and_later_rows(tmp_path: Path) -> None:
    text = "path,id,caption\na.png,1,x\nb.png,2\nc.png,3,x,extra\nd.png,4,x\n"
    results = read(write(tmp_path / "m.csv", text))
    assert summary(results) == [
        (2, "1"),
        (3, "2"),
        (4, "ERR: record has 4 fields, the header 'path,id,caption' has 3"),
        (5, "4"),
    ]


def test_csv_short_rows_leave_missing_optional_columns_empty(tmp_path: Path) -> None:
    # A spreadsheet export drops trailing empty cells: the row is not wrong for that.
    text = "path,id,caption,license\na.png\nb.png,2\nc.png,3,hello\n"
    results = read(write(tmp_path / "m.csv", text))
    assert summary(results) == [(2, "a.png"), (3, "2"), (4, "3")]
    a, b, c = items(results)
    assert (a.caption, a.metadata) == (None, {"license": ""})
    assert (b.caption, c.caption) == (None, "hello")


def test_csv_short_row_without_its_path_value_is_an_error(tmp_path: Path) -> None:
    results = read(write(tmp_path / "m.csv", "id,caption,path\n1,x,a.png\n2,y\n"))
    assert summary(results) == [
        (2, "1"),
        (
            3,
            "ERR: record has 2 fields, the header 'id,caption,path' has 3 "
            "(no value for its 'path' column)",
        ),
    ]


def test_csv_unclosed_quote_is_reported_with_its_span(tmp_path: Path) -> None:
    text = 'path,caption\na.png,"open\nb.png,x\nc.png,y\n'
    [error] = read(write(tmp_path / "m.csv", text))
    assert isinstance(error, ManifestError)
    assert error.line == 2
    assert "lines 2-4" in error.reason
    assert "quote left open" in error.reason


def test_csv_stray_quote_is_an_error(tmp_path: Path) -> None:
    text = 'path,caption\na.png,"x"y\nb.png,"ok"\n'
    assert summary(read(write(tmp_path / "m.csv", text))) == [
        (2, "ERR: bad CSV record: ',' expected after '\"'"),
        (3, "b.png"),
    ]


def test_csv_non_utf8_row_is_an_error_and_others_go_on(tmp_path: Path) -> None:
    text = b'path,caption\na.png,x\nb.png,caf\xe9\n"c.png","multi\nli\xffne"\nd.png,y\n'
    results = read(write(tmp_path / "m.csv", text))
    assert summary(results)[0] == (2, "a.png")
    assert summary(results)[3] == (6, "d.png")
    errs = errors(results)
    assert errs[3].startswith("not valid UTF-8 (byte e9 at column 10): b.png,caf\\xe9")
    assert errs[4].startswith("line 5: not valid UTF-8 (byte ff")


def test_csv_bad_rows(tmp_path: Path) -> None:
    text = "path,id,\na.png,1,\n,2,\nhttp://x/y.png,3,\nb.png,1,\nc.png,4,surprise\nd.png,5,\n"
    assert summary(read(write(tmp_path / "m.csv", text))) == [
        (2, "1"),
        (3, "ERR: empty path"),
        (4, "3"),  # a remote source, fetched before its upload (tests/unit/test_remote.py)
        (5, "ERR: duplicate id '1' (first at line 2)"),
        (6, "ERR: a value in column 3, which has no name in the header"),
        (7, "5"),
    ]


def test_csv_semicolon_and_tab_delimiters_are_detected(tmp_path: Path) -> None:
    semi = read(write(tmp_path / "semi.csv", "path;caption\na.png;x, y\n"))
    tab = read(write(tmp_path / "tab.csv", "path\tcaption\na.png\tx; y\n"))
    assert [(i.key, i.caption) for i in items(semi)] == [("a.png", "x, y")]
    assert [(i.key, i.caption) for i in items(tab)] == [("a.png", "x; y")]


def test_csv_bom_and_leading_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", b"\xef\xbb\xbf\n\npath\na.png\n")
    assert summary(read(path)) == [(4, "a.png")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty CSV manifest: it needs a header row with a 'path' column"),
        ("\n\n", "empty CSV manifest"),
        (
            "file,caption\na.png,x\n",
            "no 'path' column in the CSV header (found 'file', 'caption'); rename 'file' to 'path'",
        ),
        ("a.png,x\n", "the first row must be a header naming the columns"),
        ("path,caption,PATH\n", "the header names column 'PATH' twice (columns 1 and 3)"),
        (b"pa\xffth\n", "the header row is unreadable: not valid UTF-8"),
    ],
)
def test_csv_header_problems_raise_up_front(
    tmp_path: Path, text: str | bytes, message: str
) -> None:
    path = write(tmp_path / "m.csv", text)
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert message in info.value.reason


# --- plain list --------------------------------------------------------------------------


def test_list_strips_and_skips(tmp_path: Path) -> None:
    text = b"a.png\n  b c.png \t\r\n\n# comment\n  # indented comment\n#\xff bad comment\nsub/d.png"
    results = read(write(tmp_path / "m.txt", text))
    assert summary(results) == [(1, "a.png"), (2, "b c.png"), (7, "sub/d.png")]
    assert items(results)[2].path == tmp_path / "sub" / "d.png"


def test_list_bad_lines(tmp_path: Path) -> None:
    text = b"a.png\nb\xff.png\ngs://x/y.png\na.png\nc.png\n"
    assert summary(read(write(tmp_path / "m.lst", text))) == [
        (1, "a.png"),
        (2, "ERR: not valid UTF-8 (byte ff at column 2): b\\xff.png"),
        (
            3,
            "ERR: path is a URL ('gs://x/y.png'); ingest fetches only http://, https:// "
            "and s3:// URLs: download it and list the local path",
        ),
        (4, "ERR: duplicate path 'a.png' (first at line 1)"),
        (5, "c.png"),
    ]


# --- folder ------------------------------------------------------------------------------


def test_folder_walk_is_sorted_recursive_and_images_only(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    touch(
        root,
        "b.jpg",
        "a.png",
        "a/z.webp",
        "a/sub/y.GIF",
        "a0.png",
        "A.PNG",
        "c.TIFF",
        "d.tif",
        "e.heic",
        "f.avif",
        "g.bmp",
        "h.jpeg",
        "notes.txt",
        "raw.cr2",
        "noext",
        "a/sub/readme.md",
        ".hidden.png",
        "._b.jpg",
        ".git/x.png",
        "empty/.keep",
    )
    results = read(root)
    assert [(r.line, r.key) for r in items(results)] == list(
        enumerate(
            [
                "A.PNG",
                "a.png",
                "a/sub/y.GIF",
                "a/z.webp",
                "a0.png",
                "b.jpg",
                "c.TIFF",
                "d.tif",
                "e.heic",
                "f.avif",
                "g.bmp",
                "h.jpeg",
            ],
            start=1,
        )
    )
    assert len(results) == 12
    keys = [i.key for i in items(results)]
    assert keys == sorted(keys)
    assert items(results)[2].path == root / "a" / "sub" / "y.GIF"
    assert all(i.path.is_absolute() for i in items(results))


def test_folder_given_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path / "imgs", "x/a.png")
    monkeypatch.chdir(tmp_path)
    [item] = items(read(Path("imgs")))
    assert (item.key, item.path, item.line) == ("x/a.png", tmp_path / "imgs" / "x" / "a.png", 1)


def test_folder_follows_symlinked_directories_but_not_loops(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    touch(root, "real/a.png")
    touch(tmp_path, "outside/o.png", "target.png")
    (root / "link_dir").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "link.png").symlink_to(tmp_path / "target.png")
    assert [i.key for i in items(read(root))] == ["link.png", "link_dir/o.png", "real/a.png"]


def test_folder_root_may_be_a_symlink(tmp_path: Path) -> None:
    touch(tmp_path / "real", "a.png")
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    [item] = items(read(tmp_path / "link"))
    assert item.path == tmp_path / "link" / "a.png"


def test_folder_non_utf8_names_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    touch(root, "a.png", "c.png")
    raw_root = os.fsencode(root)
    try:
        with open(os.path.join(raw_root, b"b\xff.png"), "wb"):
            pass
        os.mkdir(os.path.join(raw_root, b"d\xfe"))
    except OSError:  # pragma: no cover - a file system that insists on UTF-8
        pytest.skip("file system rejects non-UTF-8 names")
    with open(os.path.join(raw_root, b"d\xfe", b"x.png"), "wb"):
        pass
    results = read(root)
    assert summary(results) == [
        (1, "a.png"),
        (2, "ERR: file name is not valid UTF-8: b\\xff.png"),
        (3, "c.png"),
        (4, "ERR: directory name is not valid UTF-8: d\\xfe/; skipped its contents"),
    ]


def test_folder_unreadable_subdirectory_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "imgs"
    touch(root, "a/x.png", "b/y.png", "c.png")
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        if Path(path) == root / "a":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert summary(read(root)) == [
        (1, "ERR: cannot read directory a/: Permission denied"),
        (2, "b/y.png"),
        (3, "c.png"),
    ]


def test_folder_is_walked_lazily_directory_by_directory(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    touch(root, "a/1.png", "b/2.png")
    it = read_manifest(root)
    first = next(it)
    assert isinstance(first, Item)
    assert first.key == "a/1.png"
    touch(root, "b/3.png")  # b/ is listed only when the walk reaches it
    assert [r.key for r in items(list(it))] == ["b/2.png", "b/3.png"]


def test_empty_folder_is_one_problem(tmp_path: Path) -> None:
    assert summary(read(tmp_path)) == [(None, "ERR: no images found")]


# --- property: one result per entry, good entries round-trip ------------------------------

_safe_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20
)
_paths = _safe_text.filter(
    lambda s: bool(s.strip()) and "://" not in s and not s.startswith(("data:", "~"))
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _safe_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(_safe_text, children, max_size=3)
    ),
    max_leaves=6,
)
_good = st.fixed_dictionaries(
    {"path": _paths},
    optional={
        "id": st.one_of(_safe_text.filter(lambda s: bool(s.strip())), st.integers(0, 10**12)),
        "name": _safe_text,
        "content_type": st.sampled_from(["image/png", "image/jpeg"]),
        "caption": _safe_text,
        "metadata": st.dictionaries(_safe_text, _json_values, max_size=3),
    },
)
_skipped = st.sampled_from([b"", b"   ", b"\t", b"# comment", b'  # {"path": "x"}'])
_bad = st.sampled_from(
    [
        b'{"path": ',
        b"nonsense",
        b'"str"',
        b'{"path": 1}',
        b'{"id": "only"}',
        b'{"path": "a", "bogus": 1}',
        b'{"path": ""}',
        b'{"path": "ftp://x/y"}',
        b'{"path": "caf\xe9"}',
    ]
)
_lines = st.lists(
    st.one_of(
        _good.map(lambda e: ("good", e)),
        _skipped.map(lambda b: ("skip", b)),
        _bad.map(lambda b: ("bad", b)),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(lines=_lines, crlf=st.booleans())
def test_jsonl_property_one_result_per_entry(lines: list[tuple[str, Any]], crlf: bool) -> None:
    ending = b"\r\n" if crlf else b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.jsonl"
        raw_lines = [orjson.dumps(v) if kind == "good" else v for kind, v in lines]
        path.write_bytes(b"".join(line + ending for line in raw_lines))
        results = list(read_manifest(path))

        expected_lines = [n for n, (kind, _) in enumerate(lines, start=1) if kind != "skip"]
        assert [r.line for r in results] == expected_lines

        first_seen: dict[str, int] = {}
        by_line = {r.line: r for r in results}
        for n, (kind, value) in enumerate(lines, start=1):
            if kind == "skip":
                continue
            result = by_line[n]
            if kind == "bad":
                assert isinstance(result, ManifestError)
                assert result.source == str(path)
                continue
            key = str(value["id"]) if "id" in value else value["path"]
            if key in first_seen:
                assert isinstance(result, ManifestError)
                assert result.reason.endswith(f"(first at line {first_seen[key]})")
                continue
            first_seen[key] = n
            assert isinstance(result, Item)
            assert result.key == key
            assert result.path == Path(os.path.join(tmp, value["path"]))
            assert result.name == value.get("name")
            assert result.content_type == value.get("content_type")
            assert result.caption == value.get("caption")
            assert result.metadata == value.get("metadata")
