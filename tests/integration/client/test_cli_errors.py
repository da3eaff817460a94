"""The CLI's answers by error class, its output formats, and Ctrl-C on a batch, on the
five real services through nginx (``PRELABEL_URL``): a service stopped behind the proxy
(nginx's 502), an unreachable URL, the services' own 4xx, a partial upload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.testing.servers import free_port
from prelabel_client.cli import runs
from prelabel_client.endpoints import Service
from prelabel_client.models import Scaling
from tests.integration.client.conftest import CliResult, Project, noisy_jpeg
from tests.integration.client.proxy import nginx_in_front


def _ok(result: CliResult) -> CliResult:
    assert result.exit_code == 0, result.stderr + result.stdout
    return result


def _one_line(result: CliResult) -> str:
    """The single line a failure prints on stderr (nothing on stdout, no traceback)."""
    assert result.stdout == "", result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


async def test_a_service_stopped_behind_nginx_is_one_line_naming_it_and_exit_7(
    project: Project, tmp_path: Path
) -> None:
    """nginx in front of the stack with billing's upstream on a closed port: the proxy
    answers billing's routes with its 502, as for a billing service that is down."""
    up: dict[Service, str] = {
        s: url for s, url in project.stack.endpoints.as_dict().items() if s != "billing"
    }
    with nginx_in_front(tmp_path / "proxy", up) as proxy:
        env = project.env(PRELABEL_URL=proxy.url)
        # Real processes, as a user runs them: what reaches the terminal is all there is.
        read = await project.process("billing", "budget", env=env)
        write = await project.process("billing", "top-up", "1", "-o", "json", env=env)
        alive = await project.process("datasets", "list", "-o", "json", env=env)

    for result in (read, write):
        assert result.exit_code == 7, result.stderr
        line = _one_line(result)
        assert line.startswith("error: billing service answered HTTP 502: "), line
        assert "the billing service does not answer behind the proxy" in line
        assert f"{proxy.url}/api/billing/" in line
    assert f"{proxy.url}/api/billing/budget" in read.stderr
    # The other services still answer through the same proxy.
    assert alive.exit_code == 0, alive.stderr
    assert alive.json() == []


async def test_an_unreachable_prelabel_url_names_it_and_exits_7(project: Project) -> None:
    gone = f"http://127.0.0.1:{free_port()}"

    result = await project.process("datasets", "list", env=project.env(PRELABEL_URL=gone))

    assert result.exit_code == 7
    line = _one_line(result)
    assert line.startswith(f"error: cannot reach the dataset service at {gone}/api/dataset"), line


async def test_an_upload_with_refused_files_is_a_partial_failure_exit_8(
    project: Project, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(noisy_jpeg(7))
    (folder / "empty.jpg").write_bytes(b"")
    _ok(await project.cli("datasets", "create", "mixed"))

    result = await project.cli("upload", str(folder), "-d", "mixed", "-o", "json")

    assert result.exit_code == 8, result.stderr
    summary = result.json()
    assert summary["counts"] == {"uploaded": 1, "skipped": 0, "failed": 1}
    assert summary["failed"][0]["reason"] == "HTTP 400: file is empty"


async def test_errors_exit_by_class_with_the_services_message(project: Project) -> None:
    _ok(await project.cli("datasets", "create", "dup"))

    conflict = await project.cli("datasets", "create", "dup")
    missing = await project.cli("tasks", "progress", "tsk_nope")
    bad_filter = await project.cli("items", "list", "-d", "dup", "--filter", '{"$nope": 1}')
    stranger = await project.cli("datasets", "list", env=project.env(PRELABEL_API_KEY="pk_no"))
    bad_usage = await project.cli("billing", "top-up", "lots")
    bad_option = await project.cli("datasets", "list", "--bogus")
    no_key = await project.cli("datasets", "list", env=project.env(PRELABEL_API_KEY=""))

    assert (conflict.exit_code, missing.exit_code) == (6, 5)
    assert (bad_filter.exit_code, stranger.exit_code, bad_usage.exit_code) == (2, 4, 2)
    assert "dataset service answered HTTP 409" in conflict.stderr
    assert "annotation service answered HTTP 404" in missing.stderr
    assert "tsk_nope" in missing.stderr
    assert "$nope" in bad_filter.stderr
    assert "invalid API key" in stranger.stderr
    assert bad_option.exit_code == 2
    assert "No such option" in bad_option.stderr
    assert no_key.exit_code == 4, no_key.stderr
    assert "API key is empty" in no_key.stderr
    for result in (conflict, missing, bad_filter, stranger, bad_usage):
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


async def test_json_and_yaml_outputs_parse_for_the_data_commands(project: Project) -> None:
    dataset = json.loads(_ok(await project.cli("datasets", "create", "fmt", "-o", "json")).stdout)
    item = await project.client.items.upload(dataset["id"], noisy_jpeg(3), "a.jpg")
    commands = [
        ("datasets", "list"), ("datasets", "get", "fmt"), ("items", "list", "-d", "fmt"),
        ("items", "get", item.id), ("models", "catalog"), ("models", "list"),
        ("services", "list"), ("triggers", "list"), ("executions", "list"),
        ("tasks", "list"), ("pipelines", "list"), ("billing", "budget"), ("billing", "usage"),
        ("billing", "usage", "--replicas"), ("billing", "burn-rate"), ("whoami",),
        ("profiles", "list"),
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
