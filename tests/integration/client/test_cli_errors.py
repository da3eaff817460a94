"""The CLI's answers by error class, its output formats, and Ctrl-C on a batch, on the
five real services."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
import yaml

from common.testing.servers import free_port
from prelabel_client.cli import runs
from prelabel_client.models import Scaling
from tests.integration.client.conftest import CLI, CliResult, Project, noisy_jpeg


def _ok(result: CliResult) -> CliResult:
    assert result.exit_code == 0, result.stderr + result.stdout
    return result


async def test_a_stopped_service_is_one_line_with_its_url_and_exit_7(project: Project) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, **project.env(PRELABEL_BILLING_URL=gone)}
    # A real process, as a user runs it: what reaches the terminal is all there is.
    process = await asyncio.create_subprocess_exec(
        str(CLI), "billing", "budget", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        stdout, stderr = await process.communicate()

    assert process.returncode == 7
    assert stdout == b""
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: cannot reach the billing service at {gone}")
    assert b"Traceback" not in stderr


async def test_errors_exit_by_class_with_the_services_message(project: Project) -> None:
    _ok(await project.cli("datasets", "create", "dup"))

    conflict = await project.cli("datasets", "create", "dup")
    missing = await project.cli("tasks", "progress", "tsk_nope")
    bad_filter = await project.cli("items", "list", "-d", "dup", "--filter", '{"$nope": 1}')
    stranger = await project.cli("datasets", "list", env=project.env(PRELABEL_API_KEY="pk_no"))
    bad_usage = await project.cli("billing", "top-up", "lots")

    assert (conflict.exit_code, missing.exit_code) == (6, 5)
    assert (bad_filter.exit_code, stranger.exit_code, bad_usage.exit_code) == (2, 4, 2)
    assert "dataset service answered HTTP 409" in conflict.stderr
    assert "annotation service answered HTTP 404" in missing.stderr
    assert "tsk_nope" in missing.stderr
    assert "$nope" in bad_filter.stderr
    assert "invalid API key" in stranger.stderr
    for result in (conflict, missing, bad_filter, stranger, bad_usage):
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


async def test_json_and_yaml_outputs_parse_for_the_data_commands(project: Project) -> None:
    dataset = json.loads(_ok(await project.cli("datasets", "create", "fmt", "-o", "json")).stdout)
    item = await project.client.items.upload(dataset["id"], noisy_jpeg(3), "a.jpg")
    commands = [
        ("datasets", "list"), ("datasets", "get", "fmt"), ("items", "list", "-d", "fmt"),
        ("items", "get", item.id), ("models", "catalog"), ("models", "list"),
        ("services", "list"), ("triggers", "list"), ("executions", "list"),
        ("tasks", "list"), ("billing", "budget"), ("billing", "usage"),
        ("billing", "usage", "--replicas"), ("billing", "burn-rate"), ("whoami",),
    ]  # fmt: skip
    parsed: dict[str, Any] = {}
    for command in commands:
        as_json = _ok(await project.cli(*command, "-o", "json"))
        as_yaml = _ok(await project.cli(*command, "-o", "yaml"))
        parsed[" ".join(command)] = json.loads(as_json.stdout)
        assert yaml.safe_load(as_yaml.stdout) == parsed[" ".join(command)], command
        assert "\x1b[" not in as_json.stdout + as_yaml.stdout

    assert parsed["items list -d fmt"]["items"][0]["id"] == item.id
    assert parsed["datasets get fmt"]["item_count"] == 1
    assert parsed["whoami"]["project_id"] == project.project_id


async def test_ctrl_c_during_predict_asks_and_cancels_the_batch(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = project.client
    dataset = await client.datasets.create("stuck")
    for index in range(3):
        await client.items.upload(dataset.id, noisy_jpeg(20 + index), f"{index}.jpg")
    model = await client.models.install("digits-classifier")
    # No replica may start: the batch stays queued until someone cancels it.
    service = await client.services.deploy(model.id, scaling=_no_replicas())
    await client.services.wait_ready(service.id)

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "pause", interrupt)
    result = await project.cli("predict", service.id, "-d", "stuck", input="y\n")

    assert result.exit_code == 130, result.stderr + result.stdout
    assert "cancel batch" in result.stderr
    batches = await client.batches.list()
    assert [b.counts.get("cancelled") for b in batches] == [3]


def _no_replicas() -> Scaling:
    return Scaling(min_replicas=0, max_replicas=0)
