"""The executions ledger: outcomes from model-serving, budgets from billing, and the
HTTP API (filters, counts, rerun, cancel)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from common.contracts import (
    BudgetExhausted,
    BudgetRestored,
    ModelRef,
    Origin,
    PredictionCompleted,
    PredictionFailed,
    ServiceUndeployed,
)
from common.testing.waits import wait_until
from common.topology import BILLING, MODEL_SERVING
from tests.integration.trigger_router.conftest import Router, RouterFactory, item_snapshot
from trigger_router_service import metrics


def completed(execution: dict[str, Any], replica: str = "rep_1") -> PredictionCompleted:
    now = datetime.now(UTC)
    return PredictionCompleted(
        execution_id=execution["id"],
        service_id=execution["service_id"],
        project_id=execution["project_id"],
        dataset_id=execution["dataset_id"],
        item_id=execution["item_id"],
        replica_id=replica,
        model=ModelRef(name="m", model_id="mdl_test", version="1"),
        started_at=now - timedelta(milliseconds=30),
        finished_at=now,
    )


def failed(execution: dict[str, Any], reason: str = "Triton unavailable") -> PredictionFailed:
    return PredictionFailed(
        execution_id=execution["id"],
        service_id=execution["service_id"],
        project_id=execution["project_id"],
        item_id=execution["item_id"],
        replica_id="rep_1",
        reason=reason,
        retryable=True,
    )


async def _status_is(router: Router, execution_id: str, status: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        response = await router.http.get(f"/executions/{execution_id}", headers=router.auth())
        body: dict[str, Any] = response.json()
        return body if body["status"] == status else None

    found = await wait_until(probe, timeout=10, message=f"{execution_id} is {status}")
    assert found is not None
    return found


async def _route(router: Router, service: str, count: int) -> list[dict[str, Any]]:
    items = [item_snapshot(router.project_id) for _ in range(count)]
    for item in items:
        await router.item_event(item)
    return await router.wait_executions(count, service_id=service)


async def test_outcomes_close_executions_once(router: Router) -> None:
    service = await router.deploy()
    await router.create_trigger(service)
    ok, bad = await _route(router, service, 2)

    for _ in range(2):  # a redelivered outcome changes nothing
        await router.publish(MODEL_SERVING, completed(ok, "rep_a"))
    await router.publish(MODEL_SERVING, failed(bad, "image too large for the model"))

    done = await _status_is(router, ok["id"], "success")
    broken = await _status_is(router, bad["id"], "failed")
    # A late success for the failed one wins (the prediction exists); a late failure
    # for the successful one does not undo it.
    await router.publish(MODEL_SERVING, failed(ok))
    counts = await router.http.get("/executions/counts", headers=router.auth())
    assert done["replica_id"] == "rep_a"
    assert done["started_at"] is not None
    assert done["finished_at"] is not None
    assert done["error"] is None
    assert broken["error"] == "image too large for the model"
    assert counts.json()["success"] == 1
    assert counts.json()["failed"] == 1
    assert counts.json()["queued"] == 0
    await router.publish(MODEL_SERVING, completed(bad))
    await _status_is(router, bad["id"], "success")
    assert (await router.http.get(f"/executions/{ok['id']}", headers=router.auth())).json()[
        "status"
    ] == "success"


async def test_rerun_failed_publishes_a_new_attempt(router: Router) -> None:
    service = await router.deploy()
    await router.create_trigger(service)
    first, second, third = await _route(router, service, 3)
    await router.predicts(service, 3)
    for execution in (first, second):
        await router.publish(MODEL_SERVING, failed(execution))
    await router.publish(MODEL_SERVING, completed(third))
    await _status_is(router, first["id"], "failed")
    await _status_is(router, second["id"], "failed")
    await _status_is(router, third["id"], "success")

    one = await router.http.post(f"/executions/{first['id']}/rerun", headers=router.auth())
    not_failed = await router.http.post(f"/executions/{third['id']}/rerun", headers=router.auth())
    missing = await router.http.post("/executions/exe_nope/rerun", headers=router.auth())
    [request] = await router.predicts(service, 1)
    bulk = await router.http.post("/executions/rerun", headers=router.auth())
    [bulk_request] = await router.predicts(service, 1)

    assert one.status_code == 200
    assert one.json()["status"] == "queued"
    assert one.json()["attempts"] == 2
    assert one.json()["error"] is None
    assert request.body["data"]["execution_id"] == first["id"]
    assert request.body["data"]["attempt"] == 2
    assert request.message_id == f"{first['id']}.2"
    assert not_failed.status_code == 409
    assert missing.status_code == 404
    assert bulk.json() == {"rerun": 1, "execution_ids": [second["id"]]}
    assert bulk_request.body["data"]["execution_id"] == second["id"]


async def test_list_filters_counts_and_isolation(router: Router) -> None:
    service_a = await router.deploy()
    service_b = await router.deploy()
    trigger_a = await router.create_trigger(service_a)
    await router.create_trigger(service_b)
    item = item_snapshot(router.project_id)
    await router.item_event(item)
    await router.wait_executions(2)
    started = datetime.now(UTC)
    await router.item_event(item_snapshot(router.project_id))
    executions = await router.wait_executions(4)
    await router.publish(MODEL_SERVING, completed(executions[0]))
    await _status_is(router, executions[0]["id"], "success")
    _, other_key = await router.auth_service.new_project()

    async def ids(**params: Any) -> set[str]:
        return {e["id"] for e in await router.executions(**params)}

    assert len(await ids(service_id=service_a)) == 2
    assert len(await ids(trigger_id=trigger_a["id"])) == 2
    assert len(await ids(item_id=item.id)) == 2
    assert await ids(status="success") == {executions[0]["id"]}
    assert len(await ids(status=["success", "queued"])) == 4
    assert len(await ids(since=started.isoformat())) == 2
    assert len(await ids(until=started.isoformat())) == 2
    page = await router.http.get(
        "/executions", params={"page_size": 3, "page": 1}, headers=router.auth()
    )
    assert page.json()["total_count"] == 4
    assert len(page.json()["items"]) == 1
    assert page.json()["has_next"] is False
    counts = await router.http.get(
        "/executions/counts", params={"service_id": service_a}, headers=router.auth()
    )
    assert sum(counts.json().values()) == 2
    assert set(counts.json()) >= {"queued", "success", "waiting-for-budget", "cancelled"}
    too_big = await router.http.get(
        "/executions", params={"page_size": 10_000}, headers=router.auth()
    )
    bad_status = await router.http.get(
        "/executions", params={"status": "sleeping"}, headers=router.auth()
    )
    foreign = await router.http.get(
        f"/executions/{executions[0]['id']}", headers=router.auth(other_key)
    )
    foreign_list = await router.http.get("/executions", headers=router.auth(other_key))
    assert too_big.status_code == 400
    assert bad_status.status_code == 422
    assert foreign.status_code == 404
    assert foreign_list.json()["total_count"] == 0


async def test_trigger_successes_close_together_once_each_and_end_a_cold_start_once(
    router: Router,
) -> None:
    service = await router.deploy()
    trigger = await router.create_trigger(service)
    executions = await _route(router, service, 6)
    began = datetime.now(UTC) - timedelta(seconds=3)
    await router.runtime.pool.execute(
        """INSERT INTO scaling_state (service_id, project_id, cold_start_began_at)
           VALUES ($1, $2, $3) ON CONFLICT (service_id)
           DO UPDATE SET cold_start_began_at = EXCLUDED.cold_start_began_at""",
        service,
        router.project_id,
        began,
    )
    origin = Origin(way="trigger", id=trigger["id"])
    outcomes = [completed(e).model_copy(update={"origin": origin}) for e in executions]
    colds_before = _observations(metrics.COLD_START)
    duplicates_before = router.runtime.metrics.messages.labels(
        "on_prediction_outcome", "duplicate"
    )._value.get()
    base = router.handled("on_prediction_outcome")

    # All at once, with a redelivered twin: they arrive in batches (one or several).
    await asyncio.gather(*(router.publish(MODEL_SERVING, o) for o in [*outcomes, outcomes[0]]))
    await router.wait_handled(base + 7, handler="on_prediction_outcome")

    for execution in executions:
        done = await _status_is(router, execution["id"], "success")
        assert done["replica_id"] == "rep_1"
    duplicates = router.runtime.metrics.messages.labels(
        "on_prediction_outcome", "duplicate"
    )._value.get()
    assert duplicates - duplicates_before == 1
    assert _observations(metrics.COLD_START) - colds_before == 1
    assert (
        await router.runtime.pool.fetchval(
            "SELECT cold_start_began_at FROM scaling_state WHERE service_id = $1", service
        )
        is None
    )


def _observations(histogram: Any) -> float:
    return float(
        sum(s.value for m in histogram.collect() for s in m.samples if s.name.endswith("_count"))
    )


async def test_cancelled_stays_cancelled(router: Router) -> None:
    service = await router.deploy()
    await router.create_trigger(service)
    [execution] = await _route(router, service, 1)

    cancelled = await router.http.post(
        f"/executions/{execution['id']}/cancel", headers=router.auth()
    )
    again = await router.http.post(f"/executions/{execution['id']}/cancel", headers=router.auth())
    base = router.handled("on_prediction_outcome")
    await router.publish(MODEL_SERVING, completed(execution))
    await router.publish(MODEL_SERVING, failed(execution))
    await router.wait_handled(base + 2, handler="on_prediction_outcome")

    assert cancelled.json()["status"] == "cancelled"
    assert again.status_code == 409
    counts = await router.http.get("/executions/counts", headers=router.auth())
    assert counts.json()["cancelled"] == 1


async def test_budget_exhausted_holds_work_and_restored_releases_it(router: Router) -> None:
    service = await router.deploy()
    await router.create_trigger(service)
    [before] = await _route(router, service, 1)
    queue = router.topology.predict_queue(service)
    await wait_until(
        lambda: _depth_is(router, queue, 1), timeout=10, message="first request published"
    )
    t0 = datetime.now(UTC)
    budget = {"project_id": router.project_id, "budget": Decimal(10), "spent": Decimal(10)}

    await router.publish(BILLING, BudgetExhausted(**budget, at=t0), time=t0)
    await _status_is(router, before["id"], "waiting-for-budget")
    held_item = item_snapshot(router.project_id)
    await router.item_event(held_item)
    [held] = await router.wait_executions(1, item_id=held_item.id)
    assert held["status"] == "waiting-for-budget"
    assert held["queued_at"] is None
    assert await router.queue_depth(queue) == 1  # only the request published earlier

    t1 = t0 + timedelta(seconds=1)
    await router.publish(BILLING, BudgetRestored(**budget, at=t1), time=t1)
    await _status_is(router, held["id"], "queued")
    await _status_is(router, before["id"], "queued")
    # A stale "exhausted" (older than the restore) changes nothing.
    await router.publish(BILLING, BudgetExhausted(**budget, at=t0), time=t0)
    requests = await router.predicts(service, 2)
    assert sorted(r.body["data"]["execution_id"] for r in requests) == sorted(
        [before["id"], held["id"]]
    )
    assert (await router.http.get(f"/executions/{held['id']}", headers=router.auth())).json()[
        "status"
    ] == "queued"


async def _depth_is(router: Router, queue: str, depth: int) -> bool:
    return await router.queue_depth(queue) == depth


async def test_undeploy_cancels_unfinished_executions(router: Router) -> None:
    service = await router.deploy()
    await router.create_trigger(service)
    done, pending = await _route(router, service, 2)
    await router.publish(MODEL_SERVING, completed(done))
    await _status_is(router, done["id"], "success")

    await router.publish(
        MODEL_SERVING, ServiceUndeployed(service_id=service, project_id=router.project_id)
    )

    cancelled = await _status_is(router, pending["id"], "cancelled")
    assert cancelled["error"] == f"model service {service} was undeployed"
    assert (await router.http.get(f"/executions/{done['id']}", headers=router.auth())).json()[
        "status"
    ] == "success"


async def _blocked_by(router: Router, pid: int) -> list[int]:
    """Backends waiting on a lock that backend ``pid`` holds."""
    rows = await router.runtime.pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", pid
    )
    return [int(r["pid"]) for r in rows]


async def test_a_top_up_racing_routing_leaves_no_execution_waiting_for_budget(
    router: Router,
) -> None:
    service = await router.deploy()
    trigger = await router.create_trigger(service, mode="Once")
    t0 = datetime.now(UTC)
    budget = {"project_id": router.project_id, "budget": Decimal(10), "spent": Decimal(10)}
    base = router.handled("on_budget_event")
    await router.publish(BILLING, BudgetExhausted(**budget, at=t0), time=t0)
    await router.wait_handled(base + 1, handler="on_budget_event")
    item = item_snapshot(router.project_id)

    # Hold routing after it read the budget: an uncommitted execution of the same Once
    # (trigger, item) makes its insert wait for this transaction.
    async with router.runtime.pool.acquire() as conn:
        hold = conn.transaction()
        await hold.start()
        await conn.execute(
            """INSERT INTO executions (id, project_id, service_id, trigger_id, item_id,
                   dataset_id, once, status, item)
               VALUES ('exe_hold', $1, $2, $3, $4, $5, true, 'created', '{}')""",
            router.project_id,
            service,
            trigger["id"],
            item.id,
            item.dataset_id,
        )
        holder = conn.get_server_pid()
        await router.item_event(item)
        routing: list[int] = []

        async def routing_waits() -> bool:
            routing[:] = await _blocked_by(router, holder)
            return bool(routing)

        await wait_until(routing_waits, timeout=10, message="routing waiting on the hold")
        # The top-up lands while routing is in flight (or waits for it to commit).
        t1 = t0 + timedelta(seconds=1)
        base = router.handled("on_budget_event")
        await router.publish(BILLING, BudgetRestored(**budget, at=t1), time=t1)

        async def restore_applied_or_waiting() -> bool:
            if router.handled("on_budget_event") > base:
                return True
            return bool(await _blocked_by(router, routing[0]))

        await wait_until(restore_applied_or_waiting, timeout=10, message="the top-up")
        await hold.rollback()

    [execution] = await router.wait_executions(1, item_id=item.id)
    await _status_is(router, execution["id"], "queued")


async def test_a_retryable_failure_runs_again_after_a_backoff_until_the_attempt_limit(
    router_factory: RouterFactory,
) -> None:
    async with router_factory(
        prediction_max_attempts=2, prediction_retry_seconds=0.3, retry_poll_seconds=0.05
    ) as router:
        service = await router.deploy()
        await router.create_trigger(service)
        [execution] = await _route(router, service, 1)
        [first] = await router.predicts(service, 1)
        assert first.body["data"]["attempt"] == 1

        failed_at = time.monotonic()
        await router.publish(MODEL_SERVING, failed(execution, "Triton unreachable"))
        [second] = await router.predicts(service, 1)
        assert time.monotonic() - failed_at >= 0.3  # after the backoff, not at once
        assert second.body["data"]["attempt"] == 2
        assert second.body["data"]["execution_id"] == execution["id"]
        waiting = await _status_is(router, execution["id"], "queued")
        assert waiting["attempts"] == 2

        base = router.handled("on_prediction_outcome")
        await router.publish(MODEL_SERVING, failed(execution, "Triton unreachable"))
        await router.wait_handled(base + 1, handler="on_prediction_outcome")
        closed = await _status_is(router, execution["id"], "failed")
        assert closed["attempts"] == 2
        assert closed["error"] == "Triton unreachable"
        queue = router.topology.predict_queue(service)
        assert await router.queue_depth(queue) == 0  # no third attempt
