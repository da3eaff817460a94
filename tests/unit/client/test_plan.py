"""Where local files go remotely, metadata parsing and the dedup query (no servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.dql import matches, parse_filter
from dataset_service.domain import normalize_dir as service_normalize_dir
from prelabel_client.errors import ClientError
from prelabel_client.plan import (
    chunked,
    collect_files,
    dql_literal,
    existing_content_filter,
    normalize_dir,
    parse_metadata,
    remote_dir_for,
    sha256_of,
)

DIRS = [
    "",
    "/",
    "batch1",
    "/batch1/",
    "batch1/x/",
    "//a///b//",
    "/a/../b",
    "/a/./b",
    "../../etc",
    "a\\b\\c",
    "/a\x00b/c\x1f",
    "  spaced   name /x ",
    "/caf\u0065\u0301",
    "/a*b/?",
]


@pytest.mark.parametrize("raw", DIRS)
def test_client_normalizes_dirs_exactly_like_the_service(raw: str) -> None:
    # The dedup query looks in the directory the service will store; any
    # difference would upload duplicates or skip the wrong files.
    assert normalize_dir(raw) == service_normalize_dir(raw)


@pytest.mark.parametrize(
    ("base", "relative", "expected"),
    [
        ("/", ".", "/"),
        ("/", "", "/"),
        ("/", "cats", "/cats"),
        ("/batch1", ".", "/batch1"),
        ("/batch1", "cats/small", "/batch1/cats/small"),
        ("batch1/", Path("cats"), "/batch1/cats"),
        ("/batch1", "../escape", "/batch1/escape"),
    ],
)
def test_subfolders_are_appended_to_the_remote_dir(
    base: str, relative: str | Path, expected: str
) -> None:
    assert remote_dir_for(base, relative) == expected


def _write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folders_are_walked_recursively_without_their_own_name(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    _write(root / "b.jpg", b"bb")
    _write(root / "a.jpg")
    _write(root / "cats" / "small" / "c.jpg", b"ccc")
    _write(root / "cats" / "d.jpg")
    single = _write(tmp_path / "single.png", b"1234")

    files = collect_files([root, single], "/batch1")

    assert [(f.path.relative_to(tmp_path).as_posix(), f.remote_dir, f.size) for f in files] == [
        ("photos/a.jpg", "/batch1", 1),
        ("photos/b.jpg", "/batch1", 2),
        ("photos/cats/d.jpg", "/batch1/cats", 1),
        ("photos/cats/small/c.jpg", "/batch1/cats/small", 3),
        ("single.png", "/batch1", 4),
    ]
    assert files[0].name == "a.jpg"


def test_a_file_reached_twice_is_uploaded_once(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    inner = _write(root / "a.jpg")

    files = collect_files([root, inner, root], "/")

    assert [f.path for f in files] == [inner]


def test_missing_paths_are_named(tmp_path: Path) -> None:
    with pytest.raises(ClientError, match=r"nope\.jpg"):
        collect_files([tmp_path, tmp_path / "nope.jpg"])


def test_sha256_of_reads_in_blocks(tmp_path: Path) -> None:
    path = _write(tmp_path / "f", b"abc" * 1000)
    import hashlib

    assert sha256_of(path, block=7) == hashlib.sha256(b"abc" * 1000).hexdigest()


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, {}), ("", {}), ("  ", {}), ('{"camera": "x", "n": 1}', {"camera": "x", "n": 1})],
)
def test_metadata_is_a_json_object(text: str | None, expected: dict[str, object]) -> None:
    assert parse_metadata(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "must be a JSON object.*got a JSON list"),
        ('"x"', "must be a JSON object.*got a JSON str"),
        ("{camera: x}", "not valid JSON"),
    ],
)
def test_bad_metadata_is_refused_with_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ClientError, match=message):
        parse_metadata(text)


@pytest.mark.parametrize("directory", ["/batch1", "/a*b", "/what?", "/back\\slash*", "/"])
def test_dql_literal_matches_only_the_directory_itself(directory: str) -> None:
    node = parse_filter({"dir": dql_literal(directory)})

    assert matches(node, {"dir": directory})
    assert not matches(node, {"dir": directory + "x"})
    assert not matches(node, {"dir": directory.replace("*", "zz").replace("?", "q") + "/"})


def test_dedup_filter_is_valid_dql_and_sees_hidden_items() -> None:
    query = existing_content_filter("/batch1", ["aa", "bb"])
    node = parse_filter(query, defaults=True)
    item = {"dir": "/batch1", "type": "file", "metadata": {"system": {"sha256": "bb"}}}

    assert matches(node, {**item, "hidden": True})
    assert matches(node, {**item, "hidden": False})
    assert not matches(node, {**item, "hidden": False, "dir": "/batch1/sub"})
    assert not matches(node, {**item, "hidden": False, "metadata": {"system": {"sha256": "cc"}}})


def test_chunked_keeps_order_and_bounds_size() -> None:
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunked([], 3)) == []
    with pytest.raises(ValueError, match="at least 1"):
        list(chunked([1], 0))
