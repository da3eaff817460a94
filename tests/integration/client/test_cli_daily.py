"""The daily path through the ``prelabel`` CLI on the five real services.

login -> datasets -> upload -> models install -> services deploy -> tasks -> triggers
-> predict with progress -> executions -> tasks review -> export -> billing.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import yaml

from common.testing.waits import wait_until
from prelabel_client.endpoints import SERVICES
from tests.integration.client.conftest import CliResult, Project, write_jpegs

MODEL = "digits-classifier"


def _ok(result: CliResult) -> CliResult:
    assert result.exit_code == 0, result.stderr + result.stdout
    return result


async def test_the_daily_path_from_login_to_billing(project: Project, tmp_path: Path) -> None:
    # Only the config file: everything else comes from what `login` stored.
    env = {"PRELABEL_CONFIG": str(project.config_path), "COLUMNS": "200"}

    async def cli(*args: str, input: str | None = None) -> CliResult:
        return await project.cli(*args, env=env, input=input)

    async def data(*args: str) -> Any:
        return _ok(await cli(*args, "-o", "json")).json()

    urls = [f"--service-url={s}={project.stack.endpoints.of(s)}" for s in SERVICES]
    logged_in = _ok(await cli("login", *urls, "--api-key", project.api_key))
    assert project.project_id in logged_in.stderr
    assert stat.S_IMODE(project.config_path.stat().st_mode) == 0o600
    assert (await data("whoami"))["project_id"] == project.project_id

    _ok(await cli("datasets", "create", "photos"))
    write_jpegs(tmp_path / "batch", 3, seed=11)
    write_jpegs(tmp_path / "new", 2, seed=12)
    uploaded = await data("upload", str(tmp_path / "batch"), "-d", "photos", "--dir", "/batch")
    assert uploaded["counts"] == {"uploaded": 3, "skipped": 0, "failed": 0}

    assert MODEL in [entry["name"] for entry in await data("models", "catalog")]
    model = await data("models", "install", MODEL)
    service = await data(
        "services", "deploy", model["id"], "--min-replicas", "0", "--max-replicas", "1"
    )
    assert service["status"] == "ready"
    task = await data("tasks", "create", "review digits", "-d", "photos",
                      "--from-service", service["id"])  # fmt: skip
    trigger = await data("triggers", "create", "new-items", "-s", service["id"],
                         "--action", "Created", "--filter", '{"dir": "/new"}')  # fmt: skip
    assert trigger["spec"]["filter"] == {"dir": "/new"}

    # Browser-style predict on a filter, with the live bar (on stderr).
    batch_filter = json.dumps({"dir": "/batch"})
    predicted = _ok(
        await cli("predict", service["id"], "-d", "photos", "-f", batch_filter, "--timeout", "90")
    )
    assert "items/s" in predicted.stderr
    assert "success" in predicted.stdout

    # The trigger: two new items run by themselves; watch them to the end.
    _ok(await cli("upload", str(tmp_path / "new"), "-d", "photos", "--dir", "/new"))
    watched = await data("executions", "watch", "-s", service["id"], "--expect", "5",
                         "--timeout", "120")  # fmt: skip
    assert watched["success"] == 5
    listed = yaml.safe_load(_ok(await cli("executions", "list", "-o", "yaml")).stdout)
    assert listed["total_count"] == 5
    assert {e["trigger_id"] is not None for e in listed["items"]} == {True, False}
    shown = await data("services", "show", service["id"])
    assert shown["service"]["id"] == service["id"]
    assert shown["recent_executions"] == 5

    async def filled() -> dict[str, Any] | None:
        progress = await data("tasks", "progress", task["id"])
        return progress if progress["total"] == 5 else None

    await wait_until(filled, timeout=60, message="five predictions in the task")
    reviewed = _ok(await cli("tasks", "review", task["id"], "--reviewer", "ann",
                             input="a\nd\ns\nq\n"))  # fmt: skip
    assert "1 approved, 1 discarded, 1 skipped" in reviewed.stderr
    following = await data("tasks", "next", task["id"])
    await data("tasks", "approve", task["id"], following["item_id"])
    progress = await data("tasks", "progress", task["id"])
    assert progress["counts"]["approved"] == 2
    assert progress["counts"]["discarded"] == 1

    out = tmp_path / "labels.json"
    _ok(await cli("export", "--task", task["id"], "--status", "approved", "--file", str(out)))
    coco = json.loads(out.read_text())
    assert len(coco["images"]) == 2
    lines = _ok(await cli("export", "-d", "photos", "--format", "jsonl")).stdout
    assert len(lines.strip().splitlines()) >= 5

    assert (await data("billing", "budget", "--set", "10"))["budget"] == "10"
    assert (await data("billing", "top-up", "2.5"))["budget"] == "12.5"
    usage = await data("billing", "usage")
    assert usage["project_id"] == project.project_id
    burn = yaml.safe_load(_ok(await cli("billing", "burn-rate", "-o", "yaml")).stdout)
    assert burn["project_id"] == project.project_id

    # Cost per accepted label, per model version, once billing has counted the reviews.
    async def counted() -> dict[str, Any] | None:
        report = await data("billing", "models")
        rows = [m for m in report["models"] if m["model"] and m["service_id"] == service["id"]]
        return rows[0] if rows and rows[0]["reviewed"] == 3 else None

    row = await wait_until(counted, timeout=60, message="billing counted three reviews")
    assert row["model"]["model_id"] == model["id"]
    assert row["predictions"] == 5
    assert {"acceptance_rate", "auto_accepted_share", "cost_per_accepted_label"} <= row.keys()
    assert "cost / accepted" in _ok(await cli("billing", "models")).stdout
    as_yaml = yaml.safe_load(_ok(await cli("billing", "models", "-o", "yaml")).stdout)
    assert as_yaml["project_id"] == project.project_id
    bad_window = await cli("billing", "models", "--from", "yesterday")
    assert bad_window.exit_code == 2, bad_window.stderr

    # Predict again on the same filter: this model version already predicted them.
    again = _ok(await cli("predict", service["id"], "-d", "photos", "-f", batch_filter))
    assert "3 already predicted" in again.stderr
    skipped = await data("predict", service["id"], "-d", "photos", "-f", batch_filter)
    assert skipped["counts"]["skipped"] == 3
    assert skipped["counts"]["queued"] == 0
    forced = await data("predict", service["id"], "-d", "photos", "-f", batch_filter,
                        "--force", "--timeout", "90")  # fmt: skip
    assert forced["force"] is True
    assert forced["counts"]["skipped"] == 0
    assert forced["counts"]["success"] == 3
    _ok(await cli("triggers", "pause", trigger["id"]))
    undeployed = await data("services", "undeploy", service["id"])
    assert undeployed["id"] == service["id"]


async def test_the_pipeline_way_apply_start_status_executions_stop(
    project: Project, tmp_path: Path
) -> None:
    async def data(*args: str) -> Any:
        return _ok(await project.cli(*args, "-o", "json")).json()

    dataset = await data("datasets", "create", "flow")
    model = await data("models", "install", MODEL)
    service = await data("services", "deploy", model["id"], "--max-replicas", "1")
    task = await data("tasks", "create", "flow review", "-d", "flow")
    definition = {
        "name": "digits flow",
        "nodes": [
            {"id": "in", "type": "dataset", "config": {
                "dataset_id": dataset["id"], "trigger": {"actions": ["Created"]}}},
            {"id": "predict", "type": "predict", "config": {"service_id": service["id"]}},
            {"id": "review", "type": "task", "config": {"task_id": task["id"]}},
        ],
        "edges": [{"src": "in", "tgt": "predict"}, {"src": "predict", "tgt": "review"}],
    }  # fmt: skip
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(definition))

    pipeline = await data("pipelines", "apply", str(path), "--start")
    assert pipeline["status"] == "running"
    write_jpegs(tmp_path / "in", 2, seed=31)
    _ok(await project.cli("upload", str(tmp_path / "in"), "-d", "flow"))

    async def through() -> dict[str, Any] | None:
        status = await data("pipelines", "status", pipeline["id"])
        return status if status["executions"].get("success") == 2 else None

    await wait_until(through, timeout=90, message="two items through the pipeline")
    runs = yaml.safe_load(
        _ok(await project.cli("pipelines", "executions", pipeline["id"], "-o", "yaml")).stdout
    )
    assert [n["node_id"] for n in runs["items"][0]["nodes"]] == ["in", "predict", "review"]
    assert (await data("tasks", "progress", task["id"]))["total"] == 2
    running = await project.cli("pipelines", "apply", str(path))
    assert running.exit_code == 6  # conflict: stop it before updating
    assert (await data("pipelines", "stop", pipeline["id"]))["status"] == "stopped"
    updated = await data("pipelines", "apply", str(path))
    assert (updated["id"], updated["version"]) == (pipeline["id"], 2)
    assert [p["id"] for p in await data("pipelines", "list")] == [pipeline["id"]]
