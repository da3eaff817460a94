"""The CLI refuses bad options and configuration before touching the network."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from prelabel_client.cli import app

runner = CliRunner()


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "a.jpg"
    path.write_bytes(b"x")
    return path


@pytest.mark.parametrize(
    ("metadata", "message"),
    [("[1]", "must be a JSON object"), ("{oops", "not valid JSON")],
)
def test_metadata_must_be_a_json_object(photo: Path, metadata: str, message: str) -> None:
    result = runner.invoke(
        app, ["--api-key", "k", "upload", str(photo), "-d", "ds", "--metadata", metadata]
    )

    assert result.exit_code == 2
    assert message in result.stderr


def test_an_api_key_is_required(photo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRELABEL_API_KEY", raising=False)

    result = runner.invoke(
        app, ["upload", str(photo), "-d", "ds"], env={"PRELABEL_CONFIG": "/nonexistent/cfg.json"}
    )

    assert result.exit_code == 4  # auth
    assert "PRELABEL_API_KEY is not set" in result.stderr
    assert "prelabel login" in result.stderr


def test_via_must_be_http_or_broker(photo: Path) -> None:
    result = runner.invoke(app, ["--api-key", "k", "upload", str(photo), "-d", "ds", "--via", "x"])

    assert result.exit_code == 2
    assert "--via must be http or broker" in result.stderr


def test_missing_paths_are_named(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--api-key", "k", "upload", str(tmp_path / "gone"), "-d", "ds"])

    assert result.exit_code == 2
    assert "gone" in result.stderr


def test_filter_must_be_a_json_object() -> None:
    result = runner.invoke(app, ["--api-key", "k", "items", "list", "-d", "ds", "--filter", "[]"])

    assert result.exit_code == 2
    assert "--filter must be a JSON object" in result.stderr


def test_an_unreachable_service_is_one_line_naming_its_url_and_exit_7(tmp_path: Path) -> None:
    from common.testing.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(
        app,
        ["--url", url, "--api-key", "k", "billing", "budget"],
        env={"PRELABEL_CONFIG": str(tmp_path / "none.json"), "COLUMNS": "300"},
    )

    assert result.exit_code == 7
    assert result.stderr.strip().splitlines() == [
        f"error: cannot reach the billing service at {url}/api/billing "
        "(ConnectError: All connection attempts failed)"
    ]
    assert result.stdout == ""
