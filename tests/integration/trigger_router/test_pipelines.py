"""Pipelines on the real broker and database: the API's checks (a real dataset service and a
real annotation service answer them), items entering through the dataset node's trigger,
predict nodes in the ledger, confidence edges, task commands, and the annotation service's
answer closing the task node. The test plays model-serving and the annotation service's
consumer on the broker, as the other router tests do."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest

from annotation_service.app import create_app as create_annotation
from annotation_service.settings import Settings as AnnotationSettings
from common.contracts import (
    ItemSnapshot,
    ModelRef,
    Origin,
    PredictedAnnotation,
    PredictionCompleted,
    PredictionFailed,
    TaskItemAdded,
)
from common.service import runtime_of
from common.testing.broker import delete_names
from common.testing.servers import serve_app
from common.testing.waits import wait_until
from common.topology import ANNOTATION, MODEL_SERVING
from tests.integration.trigger_router.conftest import Router, Taken, item_snapshot
from trigger_router_service.deps import Deps as RouterDeps

CONFIDENT = {"prediction.min_confidence": {"$gte": 0.9}}
UNSURE = {"$or": [{"prediction.min_confidence": {"$lt": 0.9}}, {"prediction.count": 0}]}


@pytest.fixture
async def annotation_url(
    database_url: str, amqp_url: str, pg_schema: str, router: Router
) -> AsyncIterator[str]:
    """A real annotation service (tasks' HTTP API) on its own topology prefix, so its
    consumers leave the commands on this test's exchanges to the test."""
    prefix = f"tan{uuid.uuid4().hex[:8]}."
    app = create_annotation(
        AnnotationSettings(
            amqp_url=amqp_url,
            database_url=database_url,
            db_schema=f"{pg_schema}_an",
            topology_prefix=prefix,
            auth_url=router.auth_service.url,
            outbox_poll_seconds=0.2,
        )
    )
    try:
        async with serve_app(app) as url:
            runtime_of(router.app).deps_as(RouterDeps).tasks.base_url = url
            yield url
    finally:
        queues = runtime_of(app).consumer_queues
        await delete_names(
            amqp_url,
            [*queues, *(f"{q}.dlq" for q in queues)],
            [f"{prefix}{ANNOTATION}.{k}" for k in ("events", "dlx", "commands")]
            + [f"{prefix}{MODEL_SERVING}.events", f"{prefix}dataset.events"],
        )
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {pg_schema}_an CASCADE")
        finally:
            await conn.close()


async def dataset(router: Router, key: str | None = None) -> str:
    async with httpx.AsyncClient(base_url=router.auth_service.url) as http:
        response = await http.post(
            "/datasets", json={"name": f"d-{uuid.uuid4().hex[:8]}"}, headers=router.auth(key)
        )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def task(annotation_url: str, router: Router, dataset_id: str) -> str:
    async with httpx.AsyncClient(base_url=annotation_url) as http:
        response = await http.post(
            "/tasks",
            json={"name": f"t-{uuid.uuid4().hex[:8]}", "dataset_id": dataset_id},
            headers=router.auth(),
        )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def confidence_pipeline(dataset_id: str, service: str, task_id: str) -> dict[str, Any]:
    return {
        "name": f"p-{uuid.uuid4().hex[:8]}",
        "nodes": [
            {
                "id": "ds",
                "type": "dataset",
                "config": {
                    "dataset_id": dataset_id,
                    "trigger": {"actions": ["Created"], "execution_mode": "Once"},
                },
            },
            {"id": "predict", "type": "predict", "config": {"service_id": service}},
            {"id": "done", "type": "task", "config": {"task_id": task_id, "auto_accept": True}},
            {"id": "review", "type": "task", "config": {"task_id": task_id}},
        ],
        "edges": [
            {"src": "ds", "tgt": "predict"},
            {"src": "predict", "tgt": "done", "condition": CONFIDENT},
            {"src": "predict", "tgt": "review", "condition": UNSURE},
        ],
    }


async def commands_queue(router: Router) -> str:
    """A queue on annotation.commands taking add_task_item.v1, as the annotation service's."""
    name = f"{router.topology.prefix}test.add_task_item.{uuid.uuid4().hex[:6]}"
    connection = await aio_pika.connect(router.amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            router.topology.commands_exchange(ANNOTATION), aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(name, durable=True)
        await queue.bind(exchange, routing_key="add_task_item.v1")
    finally:
        await connection.close()
    router.declared_queues.append(name)
    return name


def completed(request: Taken, *confidences: float) -> PredictionCompleted:
    data = request.body["data"]
    now = datetime.now(UTC)
    return PredictionCompleted(
        execution_id=data["execution_id"],
        service_id=data["service_id"],
        project_id=data["project_id"],
        dataset_id=data["item"]["dataset_id"],
        item_id=data["item"]["id"],
        replica_id="rep_test",
        model=ModelRef(name="digits", model_id="mdl_test", version="1"),
        annotations=[
            PredictedAnnotation(type="classification", label="7", confidence=c) for c in confidences
        ],
        started_at=now,
        finished_at=now,
        origin=Origin.model_validate(data["origin"]),
    )


async def pipeline(router: Router, pipeline_id: str) -> dict[str, Any]:
    response = await router.http.get(f"/pipelines/{pipeline_id}", headers=router.auth())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def runs(router: Router, pipeline_id: str, **params: Any) -> list[dict[str, Any]]:
    response = await router.http.get(
        f"/pipelines/{pipeline_id}/executions", params=params, headers=router.auth()
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def wait_runs(
    router: Router, pipeline_id: str, count: int, **params: Any
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        nonlocal found
        found = await runs(router, pipeline_id, **params)
        return len(found) >= count

    await wait_until(enough, timeout=10, message=f"{count} pipeline executions {params}")
    assert len(found) == count, found
    return found


async def created_running(router: Router, body: dict[str, Any]) -> str:
    response = await router.http.post("/pipelines", json=body, headers=router.auth())
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "created"
    pipeline_id = str(response.json()["id"])
    started = await router.http.post(f"/pipelines/{pipeline_id}/start", headers=router.auth())
    assert started.json()["status"] == "running"
    return pipeline_id


def item_in(router: Router, dataset_id: str) -> ItemSnapshot:
    return item_snapshot(router.project_id, dataset_id=dataset_id)


async def test_items_flow_through_predict_and_confidence_edges_into_the_task(
    router: Router, annotation_url: str
) -> None:
    service = await router.deploy()
    dataset_id = await dataset(router)
    task_id = await task(annotation_url, router, dataset_id)
    commands = await commands_queue(router)
    pipeline_id = await created_running(router, confidence_pipeline(dataset_id, service, task_id))
    sure, unsure = item_in(router, dataset_id), item_in(router, dataset_id)
    elsewhere = item_snapshot(router.project_id, dataset_id="ds_other")

    event = await router.item_event(sure)
    await router.item_event(sure, event_id=event.id)  # a redelivery
    await router.item_event(unsure)
    await router.item_event(elsewhere)
    requests = {r.body["data"]["item"]["id"]: r for r in await router.predicts(service, 2)}
    origin = requests[sure.id].body["data"]["origin"]
    assert origin["way"] == "pipeline"
    assert origin["id"] == pipeline_id
    assert origin["node_id"] == "predict"
    entered = await wait_runs(router, pipeline_id, 2, node_id="predict", node_status="running")
    assert {e["item_id"] for e in entered} == {sure.id, unsure.id}
    ledger = await router.wait_executions(2, service_id=service)
    assert {e["pipeline_id"] for e in ledger} == {pipeline_id}
    assert {e["node_id"] for e in ledger} == {"predict"}

    for outcome in (completed(requests[sure.id], 0.97), completed(requests[unsure.id], 0.4)):
        await router.publish(MODEL_SERVING, outcome)
        await router.publish(MODEL_SERVING, outcome)  # redelivered: nothing twice

    sent = {c.body["data"]["item_id"]: c.body["data"] for c in await router.take(commands, 2)}
    assert sent[sure.id]["auto_accept"] is True
    assert sent[sure.id]["node_id"] == "done"
    assert sent[unsure.id]["auto_accept"] is False
    assert sent[unsure.id]["node_id"] == "review"
    assert sent[sure.id]["annotations"][0]["confidence"] == 0.97
    assert sent[sure.id]["model"]["name"] == "digits"
    assert sent[sure.id]["execution_id"] == requests[sure.id].body["data"]["execution_id"]
    assert {c["task_id"] for c in sent.values()} == {task_id}
    assert await router.queue_depth(commands) == 0

    for data in sent.values():
        added = TaskItemAdded(
            task_id=task_id,
            project_id=router.project_id,
            item_id=data["item_id"],
            pipeline_execution_id=data["pipeline_execution_id"],
            node_id=data["node_id"],
        )
        await router.publish(ANNOTATION, added)
        await router.publish(ANNOTATION, added)

    done = await wait_runs(router, pipeline_id, 2, status="success")
    by_item = {r["item_id"]: {n["node_id"]: n["status"] for n in r["nodes"]} for r in done}
    assert by_item[sure.id] == {
        "ds": "success",
        "predict": "success",
        "done": "success",
        "review": "skipped",
    }
    assert by_item[unsure.id]["done"] == "skipped"
    assert by_item[unsure.id]["review"] == "success"
    body = await pipeline(router, pipeline_id)
    assert body["executions"]["success"] == 2
    assert body["counts"]["predict"]["success"] == 2
    assert body["counts"]["done"] == {**body["counts"]["done"], "success": 1, "skipped": 1}
    pool = runtime_of(router.app).pool
    in_db = await pool.fetch(
        "SELECT node_id, status, count(*) AS n FROM pipeline_nodes WHERE pipeline_id = $1 "
        "GROUP BY node_id, status",
        pipeline_id,
    )
    assert {(r["node_id"], r["status"]): r["n"] for r in in_db} == {
        (node, status): n
        for node, statuses in body["counts"].items()
        for status, n in statuses.items()
        if n
    }


async def test_a_failed_prediction_fails_the_node_and_a_rerun_starts_there_again(
    router: Router, annotation_url: str
) -> None:
    service = await router.deploy()
    dataset_id = await dataset(router)
    task_id = await task(annotation_url, router, dataset_id)
    pipeline_id = await created_running(router, confidence_pipeline(dataset_id, service, task_id))
    item = item_in(router, dataset_id)
    await router.item_event(item)
    [request] = await router.predicts(service, 1)
    data = request.body["data"]
    await router.publish(
        MODEL_SERVING,
        PredictionFailed(
            execution_id=data["execution_id"],
            service_id=service,
            project_id=router.project_id,
            item_id=item.id,
            reason="undecodable image",
        ),
    )
    [failed] = await wait_runs(router, pipeline_id, 1, status="failed")
    assert failed["failed_node"] == "predict"
    assert "node 'predict' failed: undecodable image" in failed["error"]
    nodes = {n["node_id"]: n for n in failed["nodes"]}
    assert nodes["predict"]["status"] == "failed"
    assert nodes["done"]["status"] == "pending"

    response = await router.http.post(
        f"/pipelines/{pipeline_id}/executions/rerun", json={}, headers=router.auth()
    )
    assert response.json() == {"rerun": 1, "execution_ids": [failed["id"]]}
    [again] = await router.predicts(service, 1)
    assert again.body["data"]["attempt"] == 2
    assert again.body["data"]["execution_id"] == data["execution_id"]
    [running] = await wait_runs(router, pipeline_id, 1, status="running")
    assert {n["node_id"]: n["status"] for n in running["nodes"]}["predict"] == "running"


async def test_stop_stops_new_items_and_a_restart_takes_new_items_only(
    router: Router, annotation_url: str
) -> None:
    service = await router.deploy()
    dataset_id = await dataset(router)
    task_id = await task(annotation_url, router, dataset_id)
    pipeline_id = await created_running(router, confidence_pipeline(dataset_id, service, task_id))
    first = item_in(router, dataset_id)
    await router.item_event(first)
    await wait_runs(router, pipeline_id, 1)
    stopped = await router.http.post(f"/pipelines/{pipeline_id}/stop", headers=router.auth())
    assert stopped.json()["status"] == "stopped"

    base = router.handled()
    while_stopped = item_in(router, dataset_id)
    await router.item_event(while_stopped)
    await router.wait_handled(base + 1)
    await router.http.post(f"/pipelines/{pipeline_id}/start", headers=router.auth())
    later = item_in(router, dataset_id)
    await router.item_event(later)

    await wait_runs(router, pipeline_id, 2)
    assert {r["item_id"] for r in await runs(router, pipeline_id)} == {first.id, later.id}
    await router.predicts(service, 2)


async def test_create_checks_every_node_and_names_it(router: Router, annotation_url: str) -> None:
    service = await router.deploy()
    dataset_id = await dataset(router)
    other_dataset = await dataset(router)
    task_id = await task(annotation_url, router, dataset_id)
    other_task = await task(annotation_url, router, other_dataset)
    _, stranger_key = await router.auth_service.new_project()
    foreign_dataset = await dataset(router, stranger_key)

    async def status_of(body: dict[str, Any]) -> tuple[int, str]:
        response = await router.http.post("/pipelines", json=body, headers=router.auth())
        detail = response.json().get("detail")
        message = detail.get("message") if isinstance(detail, dict) else str(detail)
        return response.status_code, str(message)

    good = confidence_pipeline(dataset_id, service, task_id)
    code, message = await status_of(confidence_pipeline(foreign_dataset, service, task_id))
    assert code == 404
    assert f"node 'ds': dataset {foreign_dataset} does not exist" in message
    code, message = await status_of(confidence_pipeline(dataset_id, "svc_nope", task_id))
    assert (code, "node 'predict': model service svc_nope does not exist") == (
        404,
        message[: len("node 'predict': model service svc_nope does not exist")],
    )
    code, message = await status_of(confidence_pipeline(dataset_id, service, "tsk_nope"))
    assert code == 404
    assert "node 'done': task tsk_nope does not exist" in message
    code, message = await status_of(confidence_pipeline(dataset_id, service, other_task))
    assert code == 422
    assert f"node 'done': task {other_task} is on dataset {other_dataset}" in message
    cyclic = {**good, "edges": [*good["edges"], {"src": "review", "tgt": "predict"}]}
    code, message = await status_of(cyclic)
    assert code == 422
    assert "cycle" in message
    code, _ = await status_of({**good, "nodes": [*good["nodes"], {"id": "x", "type": "code"}]})
    assert code == 422

    pipeline_id = await created_running(router, good)
    code, message = await status_of(good)
    assert code == 409
    assert "already exists" in message
    changed = {**good, "name": "renamed"}
    put = await router.http.put(f"/pipelines/{pipeline_id}", json=changed, headers=router.auth())
    assert put.status_code == 409
    deleted = await router.http.delete(f"/pipelines/{pipeline_id}", headers=router.auth())
    assert deleted.status_code == 409
    await router.http.post(f"/pipelines/{pipeline_id}/stop", headers=router.auth())
    put = await router.http.put(f"/pipelines/{pipeline_id}", json=changed, headers=router.auth())
    assert put.status_code == 200, put.text
    assert (put.json()["version"], put.json()["name"]) == (2, "renamed")
    hidden = await router.http.get(f"/pipelines/{pipeline_id}", headers=router.auth(stranger_key))
    assert hidden.status_code == 404
    deleted = await router.http.delete(f"/pipelines/{pipeline_id}", headers=router.auth())
    assert deleted.status_code == 204
    gone = await router.http.get(f"/pipelines/{pipeline_id}", headers=router.auth())
    assert gone.status_code == 404


async def test_a_cancelled_predict_execution_discards_its_late_outcome(
    router: Router, annotation_url: str
) -> None:
    service = await router.deploy()
    dataset_id = await dataset(router)
    task_id = await task(annotation_url, router, dataset_id)
    commands = await commands_queue(router)
    pipeline_id = await created_running(router, confidence_pipeline(dataset_id, service, task_id))
    item = item_in(router, dataset_id)
    await router.item_event(item)
    [request] = await router.predicts(service, 1)
    execution_id = request.body["data"]["execution_id"]

    response = await router.http.post(f"/executions/{execution_id}/cancel", headers=router.auth())
    assert response.status_code == 200, response.text
    [run] = await wait_runs(router, pipeline_id, 1, status="failed")
    assert {n["node_id"]: n["status"] for n in run["nodes"]}["predict"] == "failed"
    base = router.handled("on_prediction_outcome")
    await router.publish(MODEL_SERVING, completed(request, 0.97))  # the worker ran it anyway
    await router.wait_handled(base + 1, handler="on_prediction_outcome")

    [execution] = await router.executions(service_id=service)
    assert execution["status"] == "cancelled"
    [run] = await runs(router, pipeline_id)
    assert run["status"] == "failed"
    assert {n["node_id"]: n["status"] for n in run["nodes"]}["predict"] == "failed"
    assert await router.queue_depth(commands) == 0  # nothing sent to the task
