"""The daily path through the ``prelabel`` CLI on the five real services, through nginx.

Every run is configured by ``PRELABEL_URL`` (the proxy) and a key, or by what ``login``
stored: no per-service URL. Each noun's printing commands are run with ``-o table``,
``-o json`` and ``-o yaml`` (:meth:`Project.shown`), and the proxy's access log must
show the requests of every service.
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
from tests.integration.model_serving.conftest import COLOR_CONFIG, COLOR_MODEL_PY, COLOR_SPEC

MODEL = "digits-classifier"


def _ok(result: CliResult) -> CliResult:
    assert result.exit_code == 0, result.stderr + result.stdout
    return result


def _fails(result: CliResult, code: int) -> CliResult:
    assert result.exit_code == code, (result.exit_code, result.stderr + result.stdout)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return result


async def test_the_daily_path_from_login_to_billing(project: Project, tmp_path: Path) -> None:
    proxy = project.stack.url
    # Only the config file: everything else comes from what `login` stored.
    env = {"PRELABEL_CONFIG": str(project.config_path)}

    async def cli(*args: str, input: str | None = None) -> CliResult:
        return await project.cli(*args, env=env, input=input)

    async def data(*args: str) -> Any:
        return _ok(await cli(*args, "-o", "json")).json()

    async def shown(*args: str, moving: tuple[str, ...] = ()) -> tuple[str, Any]:
        return await project.shown(*args, env=env, moving=moving)

    # ---- login, profiles, whoami: the config file (0600) holds the one URL and the key
    logged_in = _ok(await cli("login", "--url", proxy, "--api-key", project.api_key))
    assert project.project_id in logged_in.stderr
    assert stat.S_IMODE(project.config_path.stat().st_mode) == 0o600
    stored = json.loads(project.config_path.read_text())
    assert stored["profiles"]["default"]["url"] == proxy
    assert stored["profiles"]["default"]["service_urls"] == {}
    text, me = await shown("whoami")
    assert me["project_id"] == project.project_id
    assert me["urls"] == {s: f"{proxy}/api/{s}" for s in SERVICES}
    assert project.project_id in text
    _fails(await cli("--profile", "other", "login", "--url", proxy, "--api-key", "pk_wrong"), 4)
    _ok(await cli("--profile", "spare", "login", "--url", proxy, "--api-key", project.api_key))
    assert stat.S_IMODE(project.config_path.stat().st_mode) == 0o600
    text, profiles = await shown("profiles", "list")
    assert [(p["name"], p["current"]) for p in profiles] == [("default", False), ("spare", True)]
    assert "spare" in text
    assert "pk_" not in text + json.dumps(profiles)  # keys are never shown
    _ok(await cli("profiles", "use", "default"))
    _ok(await cli("--profile", "spare", "logout"))
    assert [p["name"] for p in await data("profiles", "list")] == ["default"]
    _fails(await cli("profiles", "use", "spare"), 2)

    # ---- datasets
    created = await data("datasets", "create", "photos", "--description", "digits")
    _ok(await cli("datasets", "create", "scratch"))
    text, datasets = await shown("datasets", "list")
    assert sorted(d["name"] for d in datasets) == ["photos", "scratch"]
    assert created["id"] in text
    _ok(await cli("datasets", "delete", "scratch", "--yes"))
    _fails(await cli("datasets", "get", "scratch"), 5)

    # ---- upload, items: list --filter, get, download, delete
    batch = write_jpegs(tmp_path / "batch", 3, seed=11)
    write_jpegs(tmp_path / "new", 2, seed=12)
    write_jpegs(tmp_path / "extra", 1, seed=13)
    uploaded = await data("upload", str(tmp_path / "batch"), "-d", "photos", "--dir", "/batch")
    assert uploaded["counts"] == {"uploaded": 3, "skipped": 0, "failed": 0}
    _ok(await cli("upload", str(tmp_path / "extra"), "-d", "photos", "--dir", "/extra"))
    text, page = await shown(
        "items", "list", "-d", "photos", "--filter", '{"dir": "/batch"}', "--limit", "2"
    )
    assert page["total_count"] == 3
    assert len(page["items"]) == 2
    assert page["has_next"]
    assert "2 of 3 matching items (next: --page 1)" in text
    one = page["items"][0]
    text, item = await shown("items", "get", one["id"])
    assert item["id"] == one["id"]
    assert one["filename"] in text
    local = {p.name: p for p in batch}[Path(one["filename"]).name]
    _ok(await cli("items", "download", one["id"], "--to", str(tmp_path / "out")))
    assert (tmp_path / "out" / local.name).read_bytes() == local.read_bytes()
    spare = (await data("items", "list", "-d", "photos", "--filter", '{"dir": "/extra"}'))["items"]
    _ok(await cli("items", "delete", spare[0]["id"]))
    _fails(await cli("items", "get", spare[0]["id"]), 5)
    assert (await data("datasets", "get", "photos"))["item_count"] == 3

    # ---- models, services
    text, catalog = await shown("models", "catalog")
    assert MODEL in [entry["name"] for entry in catalog]
    assert MODEL in text
    model = await data("models", "install", MODEL)
    text, models = await shown("models", "list")
    assert [m["id"] for m in models] == [model["id"]]
    _text, got = await shown("models", "get", model["id"])
    assert got["catalog_name"] == MODEL
    service = await data(
        "services", "deploy", model["id"], "--min-replicas", "0", "--max-replicas", "1"
    )
    assert service["status"] == "ready"
    text, services = await shown("services", "list")
    assert [s["id"] for s in services] == [service["id"]]
    scaled = await data("services", "scale", service["id"], "--cooldown-seconds", "2")
    assert (scaled["min_replicas"], scaled["max_replicas"]) == (0, 1)
    assert scaled["cooldown_seconds"] == 2
    _fails(await cli("models", "delete", model["id"]), 6)  # a service uses it
    task = await data("tasks", "create", "review digits", "-d", "photos",
                      "--from-service", service["id"])  # fmt: skip
    text, tasks = await shown("tasks", "list")
    assert [t["id"] for t in tasks] == [task["id"]]
    assert "review digits" in text

    # ---- triggers
    trigger = await data("triggers", "create", "new-items", "-s", service["id"],
                         "--action", "Created", "--filter", '{"dir": "/new"}')  # fmt: skip
    assert trigger["spec"]["filter"] == {"dir": "/new"}
    text, triggers = await shown("triggers", "list", "-s", service["id"])
    assert [t["id"] for t in triggers] == [trigger["id"]]
    assert "new-items" in text
    _text, got = await shown("triggers", "get", trigger["id"])
    assert got["active"] is True
    assert (await data("triggers", "pause", trigger["id"]))["active"] is False
    assert (await data("triggers", "resume", trigger["id"]))["active"] is True

    # ---- predict on a filter, with the live bar (stderr); the table on stdout
    batch_filter = json.dumps({"dir": "/batch"})
    predicted = _ok(
        await cli("predict", service["id"], "-d", "photos", "-f", batch_filter, "--timeout", "90")
    )
    assert "items/s" in predicted.stderr
    assert "batch" in predicted.stderr
    assert "3 items" in predicted.stderr
    assert "success" in predicted.stdout

    # ---- the trigger: two new items run by themselves; watch them to the end
    _ok(await cli("upload", str(tmp_path / "new"), "-d", "photos", "--dir", "/new"))
    watched = await data("executions", "watch", "-s", service["id"], "--expect", "5",
                         "--timeout", "120")  # fmt: skip
    assert watched["success"] == 5
    text, listed = await shown("executions", "list", "-s", service["id"])
    assert listed["total_count"] == 5
    assert "5 of 5" in text
    assert {e["trigger_id"] is not None for e in listed["items"]} == {True, False}
    _text, execution = await shown("executions", "get", listed["items"][0]["id"])
    assert execution["status"] == "success"
    text, show = await shown("services", "show", service["id"], moving=("service", "autoscaler"))
    assert show["service"]["id"] == service["id"]
    assert show["recent_executions"] == 5
    assert "cold starts" in text
    text, dead = await shown("services", "dead-letters", service["id"])
    assert dead == []
    assert "dead letters of" in text

    # ---- review: the terminal loop, next, approve, discard
    async def filled() -> dict[str, Any] | None:
        progress = await data("tasks", "progress", task["id"])
        return progress if progress["total"] == 5 else None

    await wait_until(filled, timeout=60, message="five predictions in the task")
    reviewed = _ok(await cli("tasks", "review", task["id"], "--reviewer", "ann",
                             input="a\nd\ns\nq\n"))  # fmt: skip
    assert "1 approved, 1 discarded, 1 skipped" in reviewed.stderr
    _text, following = await shown("tasks", "next", task["id"])
    await data("tasks", "approve", task["id"], following["item_id"], "--reviewer", "ann")
    pending = await data("tasks", "items", task["id"], "--status", "pending-review")
    assert pending["total"] == 2
    discarded = await data("tasks", "discard", task["id"], pending["items"][0]["item_id"])
    assert discarded[0]["status"] == "discarded"
    text, progress = await shown("tasks", "progress", task["id"])
    assert (progress["counts"]["approved"], progress["counts"]["discarded"]) == (2, 2)
    assert "reviewed" in text
    text, items = await shown("tasks", "items", task["id"])
    assert items["total"] == 5
    assert "approved" in text

    # ---- export: COCO and JSON lines into files
    coco_file, lines_file = tmp_path / "labels.json", tmp_path / "labels.jsonl"
    _ok(await cli("export", "--task", task["id"], "--status", "approved",
                  "--file", str(coco_file)))  # fmt: skip
    coco = json.loads(coco_file.read_text())
    approved = {i["item_id"] for i in items["items"] if i["status"] == "approved"}
    assert len(coco["images"]) == 2
    assert {c["name"] for c in coco["categories"]} <= {str(d) for d in range(10)}
    assert {a["image_id"] for a in coco["annotations"]} <= {i["id"] for i in coco["images"]}
    _ok(await cli("export", "-d", "photos", "--format", "jsonl", "--file", str(lines_file)))
    rows = [json.loads(line) for line in lines_file.read_text().splitlines()]
    assert len({r["item_id"] for r in rows}) == 5
    assert approved <= {r["item_id"] for r in rows}
    assert {r["label"] for r in rows} <= {str(d) for d in range(10)}
    _fails(await cli("export", "-d", "photos", "--format", "csv"), 2)

    # ---- billing
    assert (await data("billing", "budget", "--set", "10"))["budget"] == "10"
    assert (await data("billing", "top-up", "2.5"))["budget"] == "12.5"
    text, budget = await shown("billing", "budget")
    assert budget["budget"] == "12.5"
    assert "remaining" in text
    text, usage = await shown("billing", "usage")
    assert usage["project_id"] == project.project_id
    _text, replicas = await shown("billing", "usage", "--replicas")
    assert isinstance(replicas, list)
    text, burn = await shown("billing", "burn-rate")
    assert burn["project_id"] == project.project_id
    assert "budget lasts" in text

    # Cost per accepted label, per model version, once billing has counted the reviews.
    async def counted() -> dict[str, Any] | None:
        report = await data("billing", "models")
        rows = [m for m in report["models"] if m["model"] and m["service_id"] == service["id"]]
        return rows[0] if rows and rows[0]["reviewed"] == 4 else None

    row = await wait_until(counted, timeout=60, message="billing counted four reviews")
    assert row is not None
    assert row["model"]["model_id"] == model["id"]
    assert row["predictions"] == 5
    assert {"acceptance_rate", "auto_accepted_share", "cost_per_accepted_label"} <= row.keys()
    text, report = await shown("billing", "models", moving=("to",))
    assert "cost / accepted" in text
    assert report["project_id"] == project.project_id
    _fails(await cli("billing", "models", "--from", "yesterday"), 2)

    # ---- predict again on the same filter: this model version already predicted them
    again = _ok(await cli("predict", service["id"], "-d", "photos", "-f", batch_filter))
    assert "3 already predicted" in again.stderr
    skipped = await data("predict", service["id"], "-d", "photos", "-f", batch_filter)
    assert skipped["counts"]["skipped"] == 3
    assert skipped["counts"]["queued"] == 0
    # JSON for scripts, as a user's terminal gets it: no colour, no bar, nothing on stderr.
    forced = await project.process(
        "predict", service["id"], "-d", "photos", "-f", batch_filter, "--force",
        "--timeout", "90", "-o", "json", env={**env, "FORCE_COLOR": "1"},
    )  # fmt: skip
    _ok(forced)
    assert "\x1b[" not in forced.stdout
    assert forced.stderr == ""
    assert forced.json()["force"] is True
    assert forced.json()["counts"]["skipped"] == 0
    assert forced.json()["counts"]["success"] == 3
    by_ids = yaml.safe_load(
        _ok(await cli("predict", service["id"], one["id"], "-o", "yaml")).stdout
    )
    assert (by_ids["item_count"], by_ids["counts"]["skipped"]) == (1, 1)

    _ok(await cli("triggers", "delete", trigger["id"]))
    _fails(await cli("triggers", "get", trigger["id"]), 5)
    undeployed = await data("services", "undeploy", service["id"])
    assert undeployed["id"] == service["id"]

    # All of it went through nginx: requests under every service's prefix.
    logged = project.stack.proxy_requests()
    for name in SERVICES:
        assert any(f" /api/{name}/" in line for line in logged), name


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

    pipeline = await data("pipelines", "apply", str(path))
    assert pipeline["status"] != "running"
    assert (await data("pipelines", "start", pipeline["id"]))["status"] == "running"
    write_jpegs(tmp_path / "in", 2, seed=31)
    _ok(await project.cli("upload", str(tmp_path / "in"), "-d", "flow", "--dir", "/in"))

    async def through(count: int) -> dict[str, Any] | None:
        status = await data("pipelines", "status", pipeline["id"])
        return status if status["executions"].get("success") == count else None

    await wait_until(lambda: through(2), timeout=90, message="two items through the pipeline")
    text, status = await project.shown("pipelines", "status", pipeline["id"])
    assert "node predict" in text
    assert status["status"] == "running"
    text, runs = await project.shown("pipelines", "executions", pipeline["id"])
    assert [n["node_id"] for n in runs["items"][0]["nodes"]] == ["in", "predict", "review"]
    assert "predict:" in text
    assert (await data("tasks", "progress", task["id"]))["total"] == 2
    _fails(await project.cli("pipelines", "apply", str(path)), 6)  # stop it before updating
    assert (await data("pipelines", "stop", pipeline["id"]))["status"] == "stopped"
    updated = await data("pipelines", "apply", str(path), "--start")
    assert (updated["id"], updated["version"], updated["status"]) == (pipeline["id"], 2, "running")
    text, listed = await project.shown("pipelines", "list")
    assert [p["id"] for p in listed] == [pipeline["id"]]
    assert "digits flow" in text

    # Items already in the dataset, sent through by hand (they are predicted again).
    first = (await data("items", "list", "-d", "flow"))["items"][0]
    run = await data("pipelines", "run", pipeline["id"], first["id"])
    assert (run["items"], run["entered"]) == (1, 1)
    await wait_until(lambda: through(3), timeout=90, message="the run's item through")
    _fails(await project.cli("pipelines", "run", pipeline["id"]), 2)  # ids or --filter
    _fails(await project.cli("pipelines", "status", "pip_nope"), 5)


async def test_executions_cancel_and_rerun_on_a_service_that_cannot_start(
    project: Project, tmp_path: Path
) -> None:
    """A service with no replicas allowed keeps its executions queued: cancel them,
    rerun one, and see the ledger follow."""

    async def data(*args: str) -> Any:
        return _ok(await project.cli(*args, "-o", "json")).json()

    await data("datasets", "create", "held")
    write_jpegs(tmp_path / "held", 2, seed=41)
    _ok(await project.cli("upload", str(tmp_path / "held"), "-d", "held"))
    model = await data("models", "install", MODEL)
    service = await data("services", "deploy", model["id"], "--max-replicas", "0")
    batch = await data("predict", service["id"], "-d", "held", "--no-wait")
    assert batch["item_count"] == 2

    async def waiting() -> list[dict[str, Any]] | None:
        page = await data("executions", "list", "-s", service["id"],
                          "--status", "created", "--status", "queued")  # fmt: skip
        return page["items"] if page["total_count"] == 2 else None

    executions = await wait_until(waiting, timeout=30, message="two waiting executions")
    assert executions is not None
    ids = [e["id"] for e in executions]
    text = _ok(await project.cli("executions", "cancel", *ids)).stdout
    assert "cancelled" in text
    cancelled = yaml.safe_load(
        _ok(await project.cli("executions", "list", "-s", service["id"], "-o", "yaml")).stdout
    )
    assert {e["status"] for e in cancelled["items"]} == {"cancelled"}
    rerun = await data("executions", "rerun", ids[0])
    assert rerun["rerun"] == 1
    again = await data("executions", "get", rerun["execution_ids"][0])
    assert again["status"] in ("created", "queued")
    none_failed = await data("executions", "rerun", "--failed", "-s", service["id"])
    assert none_failed["rerun"] == 0
    _fails(await project.cli("executions", "rerun"), 2)  # ids or --failed
    _fails(await project.cli("executions", "list", "--status", "bogus"), 2)
    _ok(await project.cli("executions", "cancel", rerun["execution_ids"][0]))
    _ok(await project.cli("services", "undeploy", service["id"]))


async def test_bring_your_own_model_push_list_get_delete(project: Project, tmp_path: Path) -> None:
    folder = tmp_path / "color"
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(COLOR_CONFIG)
    (folder / "1" / "model.py").write_text(COLOR_MODEL_PY)
    (folder / "spec.yaml").write_text(yaml.safe_dump(COLOR_SPEC))

    pushed = yaml.safe_load(
        _ok(
            await project.cli("models", "push", str(folder), "--name", "color", "-o", "yaml")
        ).stdout
    )
    assert (pushed["name"], pushed["source"]) == ("color", "byom")
    text, models = await project.shown("models", "list")
    assert [m["id"] for m in models] == [pushed["id"]]
    assert "byom" in text
    text, model = await project.shown("models", "get", pushed["id"])
    assert model["spec"]["labels"] == ["red", "blue"]
    assert "color" in text
    _fails(await project.cli("models", "push", str(folder), "--name", "x", "--spec", '{"a": '), 2)
    bad_spec = json.dumps({**COLOR_SPEC, "labels": ["red"]})
    refused = _fails(
        await project.cli("models", "push", str(folder), "--name", "x", "--spec", bad_spec), 2
    )
    assert "model-serving service answered HTTP 4" in refused.stderr
    _ok(await project.cli("models", "delete", pushed["id"]))
    _fails(await project.cli("models", "get", pushed["id"]), 5)


async def test_projects_and_api_keys_with_the_admin_key(project: Project) -> None:
    """The admin's nouns: a new project and a key for it, through the proxy; the key works."""
    created = _ok(await project.cli("projects", "create", "acme", "-o", "json")).json()
    assert created["name"] == "acme"
    assert (
        yaml.safe_load(_ok(await project.cli("projects", "create", "acme-2", "-o", "yaml")).stdout)[
            "name"
        ]
        == "acme-2"
    )
    assert "acme-3" in _ok(await project.cli("projects", "create", "acme-3")).stdout
    made = yaml.safe_load(
        _ok(
            await project.cli("api-keys", "create", created["id"], "--name", "ci", "-o", "yaml")
        ).stdout
    )
    key = made["key"]
    table = _ok(await project.cli("api-keys", "create", created["id"], "--name", "ci2"))
    assert "not shown again" in table.stderr
    whoami = await project.cli("whoami", "-o", "json", env=project.env(PRELABEL_API_KEY=key))
    assert _ok(whoami).json()["project_id"] == created["id"]
    no_admin = {k: v for k, v in project.env().items() if k != "PRELABEL_ADMIN_KEY"}
    _fails(await project.cli("projects", "create", "x", env=no_admin), 4)
    wrong_admin = project.env(PRELABEL_ADMIN_KEY="not-the-admin-key")
    _fails(await project.cli("api-keys", "create", created["id"], env=wrong_admin), 4)
