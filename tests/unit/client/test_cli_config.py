"""The CLI's config file: mode 0600, profiles, and which source wins."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prelabel_client.cli import app
from prelabel_client.cli.config import ConfigFile, Profile, load, save
from prelabel_client.cli.context import State

runner = CliRunner()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_login_writes_the_profile_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "prelabel" / "config.json"
    env = {"PRELABEL_CONFIG": str(path)}

    first = runner.invoke(
        app, ["login", "--url", "http://proxy:8080", "--api-key", "pk_one", "--no-verify"], env=env
    )
    second = runner.invoke(
        app,
        ["--profile", "dev", "login", "--service-url", "dataset=http://127.0.0.1:9/",
         "--api-key", "pk_two", "--no-verify"],
        env=env,
    )  # fmt: skip

    assert first.exit_code == 0, first.stderr
    assert second.exit_code == 0, second.stderr
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    saved = load(path)
    assert saved.current == "dev"
    assert saved.profiles["default"].url == "http://proxy:8080"
    assert saved.profiles["dev"].service_urls == {"dataset": "http://127.0.0.1:9"}
    assert saved.profiles["dev"].api_key == "pk_two"


def test_rewriting_keeps_mode_0600_even_after_a_chmod(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    save(path, ConfigFile(profiles={"default": Profile(url="http://a", api_key="k")}))
    path.chmod(0o644)

    save(path, ConfigFile(profiles={"default": Profile(url="http://b", api_key="k")}))

    assert _mode(path) == 0o600
    assert load(path).profiles["default"].url == "http://b"


def test_profiles_list_never_shows_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    save(path, ConfigFile(profiles={"default": Profile(url="http://a", api_key="pk_secret")}))

    result = runner.invoke(
        app, ["profiles", "list", "-o", "json"], env={"PRELABEL_CONFIG": str(path)}
    )

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [
        {
            "name": "default",
            "current": True,
            "url": "http://a",
            "service_urls": {},
            "project_id": None,
        }
    ]
    assert "pk_secret" not in result.stdout


def test_options_beat_environment_which_beats_the_current_profile(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    profiles = {
        "default": Profile(url="http://profile", api_key="pk_profile"),
        "ci": Profile(url="http://ci", api_key="pk_ci"),
    }
    save(path, ConfigFile(profiles=profiles))
    env = {"PRELABEL_CONFIG": str(path), "PRELABEL_API_KEY": "pk_env"}

    from_env = State(environ=env).settings()
    from_option = State(api_key="pk_option", environ=env).settings()
    named = State(profile="ci", environ=env).settings()

    assert (from_env.url, from_env.api_key.get_secret_value()) == ("http://profile", "pk_env")
    assert from_option.api_key.get_secret_value() == "pk_option"
    # A profile asked for by name is used whole, even over the environment.
    assert (named.url, named.api_key.get_secret_value()) == ("http://ci", "pk_ci")
    assert named.endpoints.billing == "http://ci/api/billing"


def test_an_unknown_profile_or_a_broken_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    broken = runner.invoke(app, ["datasets", "list"], env={"PRELABEL_CONFIG": str(path)})
    path.write_text("{}")
    unknown = runner.invoke(
        app, ["--profile", "nope", "datasets", "list"], env={"PRELABEL_CONFIG": str(path)}
    )

    assert broken.exit_code == 2
    assert f"the configuration file {path} is not valid" in broken.stderr
    assert unknown.exit_code == 2
    assert "no profile 'nope'" in unknown.stderr


@pytest.mark.parametrize("value", ["dataset", "nope=http://x", "=http://x"])
def test_service_url_needs_a_known_service_and_a_url(tmp_path: Path, value: str) -> None:
    result = runner.invoke(
        app,
        ["login", "--service-url", value, "--api-key", "k", "--no-verify"],
        env={"PRELABEL_CONFIG": str(tmp_path / "c.json")},
    )

    assert result.exit_code == 2
    assert "--service-url" in result.stderr
    assert not (tmp_path / "c.json").exists()
