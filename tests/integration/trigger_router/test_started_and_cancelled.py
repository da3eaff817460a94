"""``in-progress`` from ``prediction.started.v1`` and ``execution.cancelled.v1`` from every
cancel: the router's side of "cancel prevents the prediction or discards its result"."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from common.contracts import PredictionStarted, ServiceUndeployed, StartedExecution
from common.testing.broker import EventProbe, probe_exchange
from common.testing.waits import wait_until
from common.topology import MODEL_SERVING, TRIGGER_ROUTER
from tests.integration.trigger_router import test_pipelines as pipelines
from tests.integration.trigger_router.conftest import Router, item_snapshot
from tests.integration.trigger_router.test_batches import _dataset
from tests.integration.trigger_router.test_executions import _route, _status_is, completed

# The real annotation service the pipeline's task node is checked against (a fixture).
from tests.integration.trigger_router.test_pipelines import annotation_url  # noqa: F401

CANCELLED = "execution.cancelled.v1"
OUTCOMES = "on_prediction_outcome"


def started(
    executions: list[dict[str, Any]],
    replica: str = "rep_s",
    at: datetime | None = None,
    attempt: int = 1,
) -> PredictionStarted:
    first = executions[0]
    return PredictionStarted(
        service_id=first["service_id"],
        project_id=first["project_id"],
        replica_id=replica,
        started_at=at or datetime.now(UTC),
        executions=[StartedExecution(execution_id=e["id"], attempt=attempt) for e in executions],
    )


async def _get(router: Router, execution_id: str) -> dict[str, Any]:
    response = await router.http.get(f"/executions/{execution_id}", headers=router.auth())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@contextlib.asynccontextmanager
async def cancels(router: Router) -> AsyncIterator[EventProbe]:
    """The router's ``execution.cancelled.v1`` events as they are published."""
    exchange = router.topology.events_exchange(TRIGGER_ROUTER)
    async with probe_exchange(router.amqp_url, exchange, CANCELLED) as probe:
        yield probe


async def test_started_moves_a_batch_of_executions_in_progress(router: Router) -> None:
    service = await router.deploy()
    await router.create_trigger(service)
    executions = await _route(router, service, 3)
    at = datetime.now(UTC).replace(microsecond=0)

    await router.publish(MODEL_SERVING, started(executions[:2], "rep_s", at))

    for execution in executions[:2]:
        running = await _status_is(router, execution["id"], "in-progress")
        assert running["replica_id"] == "rep_s"
        assert datetime.fromisoformat(running["started_at"]) == at
        assert running["finished_at"] is None
    assert (await _get(router, executions[2]["id"]))["status"] == "queued"
    counts = await router.http.get("/executions/counts", headers=router.auth())
    assert counts.json()["in-progress"] == 2
    # The outcome closes an in-progress execution as it closes a queued one.
    await router.publish(MODEL_SERVING, completed(executions[0], "rep_s"))
    await _status_is(router, executions[0]["id"], "success")


async def test_a_redelivered_started_event_changes_nothing_twice(router: Router) -> None:
    service = await router.deploy()
    await router.create_trigger(service)
    [execution] = await _route(router, service, 1)
    event = started([execution])
    metric = router.runtime.metrics.messages.labels(OUTCOMES, "duplicate")
    base, duplicates = router.handled(OUTCOMES), metric._value.get()

    await router.publish(MODEL_SERVING, event, event_id="evt_started_once")
    await router.publish(MODEL_SERVING, event, event_id="evt_started_once")
    await router.wait_handled(base + 2, handler=OUTCOMES)

    assert metric._value.get() == duplicates + 1
    running = await _get(router, execution["id"])
    assert running["status"] == "in-progress"
    assert running["replica_id"] == "rep_s"


async def test_started_after_the_outcome_or_a_cancel_changes_nothing(router: Router) -> None:
    service = await router.deploy()
    await router.create_trigger(service)
    done, cancelled, retried = await _route(router, service, 3)
    outcome = completed(done, "rep_done")
    await router.publish(MODEL_SERVING, outcome)
    await _status_is(router, done["id"], "success")
    response = await router.http.post(
        f"/executions/{cancelled['id']}/cancel", headers=router.auth()
    )
    assert response.status_code == 200, response.text
    # An attempt that is no longer the current one: the started event names attempt 1 of
    # an execution now on attempt 2 (as after a scheduled retry).
    await router.runtime.pool.execute(
        "UPDATE executions SET attempts = 2 WHERE id = $1", retried["id"]
    )
    base = router.handled(OUTCOMES)

    late = datetime.now(UTC) + timedelta(seconds=5)
    await router.publish(MODEL_SERVING, started([done, cancelled, retried], "rep_late", late))
    await router.wait_handled(base + 1, handler=OUTCOMES)

    after = await _get(router, done["id"])
    assert after["status"] == "success"
    assert after["replica_id"] == "rep_done"
    assert datetime.fromisoformat(after["started_at"]) == outcome.started_at
    assert (await _get(router, cancelled["id"]))["status"] == "cancelled"
    assert (await _get(router, retried["id"]))["status"] == "queued"
    assert (await _get(router, retried["id"]))["replica_id"] is None


async def test_cancel_of_an_in_progress_execution_is_announced_once(router: Router) -> None:
    service = await router.deploy()
    await router.create_trigger(service)
    running, done = await _route(router, service, 2)
    await router.publish(MODEL_SERVING, started([running]))
    await _status_is(router, running["id"], "in-progress")
    await router.publish(MODEL_SERVING, completed(done))
    await _status_is(router, done["id"], "success")

    async with cancels(router) as probe:
        first = await router.http.post(f"/executions/{running['id']}/cancel", headers=router.auth())
        again = await router.http.post(f"/executions/{running['id']}/cancel", headers=router.auth())
        finished = await router.http.post(f"/executions/{done['id']}/cancel", headers=router.auth())
        [message] = await probe.wait_for(1)
        # A later cancel that did publish shows that nothing else was on its way.
        [sentinel] = await _route_more(router, service)
        await router.http.post(f"/executions/{sentinel['id']}/cancel", headers=router.auth())
        await probe.wait_for(2)

    assert first.status_code == 200, first.text
    assert first.json()["status"] == "cancelled"
    assert again.status_code == 409
    assert finished.status_code == 409
    data = message.body["data"]
    assert message.body["type"] == f"prelabel.{CANCELLED}"
    assert message.body["correlationid"] == running["id"]
    assert data["execution_id"] == running["id"]
    assert data["service_id"] == service
    assert data["item_id"] == running["item_id"]
    assert data["attempt"] == 1
    assert data["reason"] == "cancelled by request"
    assert data["origin"] == {
        "way": "trigger",
        "id": running["trigger_id"],
        "pipeline_execution_id": None,
        "node_id": None,
    }
    ids = [m.body["data"]["execution_id"] for m in probe.of(CANCELLED)]
    assert ids == [running["id"], sentinel["id"]]


async def _route_more(router: Router, service: str) -> list[dict[str, Any]]:
    before = {e["id"] for e in await router.executions(service_id=service)}
    await router.item_event(item_snapshot(router.project_id))
    now = await router.wait_executions(len(before) + 1, service_id=service)
    return [e for e in now if e["id"] not in before]


async def test_batch_cancel_announces_every_unfinished_execution(router: Router) -> None:
    service = await router.deploy()
    _, items = await _dataset(router)
    response = await router.http.post(
        f"/services/{service}/predict",
        json={"item_ids": [i["id"] for i in items]},
        headers=router.auth(),
    )
    assert response.status_code == 201, response.text
    batch = response.json()
    executions = await router.wait_executions(3, service_id=service)
    done, running, queued = executions
    await router.publish(MODEL_SERVING, completed(done))
    await _status_is(router, done["id"], "success")
    await router.publish(MODEL_SERVING, started([running]))
    await _status_is(router, running["id"], "in-progress")

    async with cancels(router) as probe:
        cancelled = await router.http.post(f"/batches/{batch['id']}/cancel", headers=router.auth())
        messages = await probe.wait_for(2)

    assert cancelled.json()["counts"]["cancelled"] == 2
    assert cancelled.json()["counts"]["success"] == 1
    by_id = {m.body["data"]["execution_id"]: m.body["data"] for m in messages}
    assert set(by_id) == {running["id"], queued["id"]}
    assert {d["reason"] for d in by_id.values()} == {"batch cancelled"}
    assert {d["origin"]["way"] for d in by_id.values()} == {"batch"}
    assert {d["origin"]["id"] for d in by_id.values()} == {batch["id"]}


async def test_undeploy_announces_the_executions_it_cancels(router: Router) -> None:
    service = await router.deploy()
    await router.create_trigger(service)
    done, pending = await _route(router, service, 2)
    await router.publish(MODEL_SERVING, completed(done))
    await _status_is(router, done["id"], "success")

    async with cancels(router) as probe:
        await router.publish(
            MODEL_SERVING, ServiceUndeployed(service_id=service, project_id=router.project_id)
        )
        [message] = await probe.wait_for(1)
        await _status_is(router, pending["id"], "cancelled")

    assert message.body["data"]["execution_id"] == pending["id"]
    assert message.body["data"]["reason"] == f"model service {service} was undeployed"


async def test_a_rerun_after_a_cancel_is_a_new_attempt(router: Router) -> None:
    service = await router.deploy()
    await router.create_trigger(service)
    [execution] = await _route(router, service, 1)
    await router.predicts(service, 1)
    async with cancels(router) as probe:
        await router.http.post(f"/executions/{execution['id']}/cancel", headers=router.auth())
        [message] = await probe.wait_for(1)
    rerun = await router.http.post(f"/executions/{execution['id']}/rerun", headers=router.auth())
    [request] = await router.predicts(service, 1)

    assert message.body["data"]["attempt"] == 1
    assert rerun.json()["attempts"] == 2
    assert request.body["data"]["attempt"] == 2

    async def moved() -> bool:
        return bool((await _get(router, execution["id"]))["status"] == "in-progress")

    await router.publish(MODEL_SERVING, started([execution], attempt=2))
    await wait_until(moved, timeout=10, message="attempt 2 in progress")


async def test_a_pipeline_predict_execution_cancelled_in_progress_is_announced_and_ends_its_run(
    router: Router,
    annotation_url: str,  # noqa: F811
) -> None:
    service = await router.deploy()
    dataset_id = await pipelines.dataset(router)
    task_id = await pipelines.task(annotation_url, router, dataset_id)
    commands = await pipelines.commands_queue(router)
    body = pipelines.confidence_pipeline(dataset_id, service, task_id)
    pipeline_id = await pipelines.created_running(router, body)
    await router.item_event(pipelines.item_in(router, dataset_id))
    [request] = await router.predicts(service, 1)
    execution = {"id": request.body["data"]["execution_id"], **request.body["data"]}
    await router.publish(MODEL_SERVING, started([execution]))
    await _status_is(router, execution["id"], "in-progress")

    async with cancels(router) as probe:
        response = await router.http.post(
            f"/executions/{execution['id']}/cancel", headers=router.auth()
        )
        [message] = await probe.wait_for(1)
    base = router.handled(OUTCOMES)
    await router.publish(MODEL_SERVING, pipelines.completed(request, 0.97))  # ran anyway
    await router.wait_handled(base + 1, handler=OUTCOMES)

    assert response.status_code == 200, response.text
    origin = message.body["data"]["origin"]
    assert (origin["way"], origin["id"], origin["node_id"]) == ("pipeline", pipeline_id, "predict")
    [run] = await pipelines.wait_runs(router, pipeline_id, 1, status="failed")
    assert {n["node_id"]: n["status"] for n in run["nodes"]}["predict"] == "failed"
    assert (await _get(router, execution["id"]))["status"] == "cancelled"
    assert await router.queue_depth(commands) == 0  # no add_task_item.v1 for it
