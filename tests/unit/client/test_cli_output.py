"""``-o json|yaml`` prints plain, parseable text; ``--version`` and help examples."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from prelabel_client.cli import app
from prelabel_client.cli.context import EXIT_CODES
from prelabel_client.cli.output import Format, dump
from prelabel_client.models import Budget

runner = CliRunner()

BUDGET = Budget(
    project_id="prj_1",
    budget=Decimal("12.50"),
    spent=Decimal("0.25"),
    remaining=Decimal("12.25"),
    exhausted=False,
    charged_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
)


@pytest.mark.parametrize("fmt", [Format.json, Format.yaml])
def test_models_with_decimals_and_dates_dump_to_parseable_text(fmt: Format) -> None:
    text = dump([BUDGET], fmt)
    parsed = json.loads(text) if fmt is Format.json else yaml.safe_load(text)

    assert parsed[0]["budget"] == "12.50"
    assert parsed[0]["charged_at"].startswith("2025-01-02T03:04:05")
    assert "\x1b[" not in text  # no colour codes


def test_version() -> None:
    result = runner.invoke(app, ["--version"])

    assert result.exit_code == 0
    assert result.stdout.startswith("prelabel ")


def _leaves(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = []
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found += _leaves(command, (*prefix, name))
        else:
            found.append(((*prefix, name), command))
    return found


def test_every_command_has_an_example_and_data_commands_take_output() -> None:
    root = typer.main.get_command(app)
    commands = _leaves(root)
    without_output = {
        ("datasets", "delete"), ("items", "download"), ("items", "delete"), ("models", "delete"),
        ("triggers", "delete"), ("tasks", "review"), ("export",), ("login",), ("logout",),
        ("profiles", "use"),
    }  # fmt: skip

    assert len(commands) > 50
    for path, command in commands:
        assert "Example: prelabel" in (command.help or ""), path
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        if path not in without_output:
            assert "-o" in options, path


def test_help_lists_the_exit_codes() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0
    for code, meaning in EXIT_CODES:
        assert f"{code}: {meaning.split(':')[0]}" in result.stdout
