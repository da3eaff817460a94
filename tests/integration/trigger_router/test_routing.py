"""Item events through the router on the real broker and database: matching, predict
requests, Once vs Always, redelivery, live trigger changes and bad input."""

from __future__ import annotations

import json

from common.contracts import ItemCreated, ItemDeleted, ItemUpdated, ServiceUndeployed
from common.envelope import make_event
from common.testing.waits import wait_until
from common.topology import DATASET, DEAD_LETTER_REASON_HEADER, MODEL_SERVING
from tests.integration.trigger_router.conftest import Router, item_snapshot
from trigger_router_service import metrics


async def test_a_matching_item_becomes_one_queued_execution_and_one_predict_request(
    router: Router,
) -> None:
    service = await router.deploy()
    trigger = await router.create_trigger(
        service, filter={"metadata.system.mimetype": "image/*", "dir": "/batch1/**"}
    )
    item = item_snapshot(router.project_id, dir="/batch1/x")
    skipped = item_snapshot(router.project_id, dir="/batch10")
    base = router.handled()

    event = await router.item_event(item)
    await router.item_event(skipped)

    [request] = await router.predicts(service, 1)
    await router.wait_handled(base + 2)
    [execution] = await router.wait_executions(1)
    assert request.routing_key == service
    assert request.body["type"] == "prelabel.predict_item.v1"
    assert request.body["correlationid"] == execution["id"]
    assert request.message_id == f"{execution['id']}.1"
    data = request.body["data"]
    assert data["execution_id"] == execution["id"]
    assert data["service_id"] == service
    assert data["trigger_id"] == trigger["id"]
    assert data["item"]["id"] == item.id
    assert data["attempt"] == 1
    assert execution["status"] == "queued"
    assert execution["item_id"] == item.id
    assert execution["trigger_id"] == trigger["id"]
    assert execution["event_id"] == event.id
    assert execution["action"] == "Created"
    assert execution["attempts"] == 1
    assert execution["cold_start"] is True  # no replica was running
    assert execution["queued_at"] is not None
    assert await router.queue_depth(router.topology.predict_queue(service)) == 0


async def test_once_fires_once_per_item_and_always_on_every_matching_update(
    router: Router,
) -> None:
    service = await router.deploy()
    once = await router.create_trigger(
        service,
        mode="Once",
        actions=["MetadataUpdated"],
        filter={"metadata.user.reviewed": True},
    )
    always = await router.create_trigger(
        service, mode="Always", actions=["MetadataUpdated"], filter={"metadata.user.reviewed": True}
    )
    first = item_snapshot(router.project_id)
    second = item_snapshot(router.project_id)
    base = router.handled()

    # Not reviewed yet: no match. Then three updates while reviewed on the first item.
    first = await router.metadata_updated(first, reviewed=False)
    for n in range(3):
        first = await router.metadata_updated(first, reviewed=True, n=n)
    second = await router.metadata_updated(second, reviewed=True)
    await router.wait_handled(base + 5)

    by_once = await router.wait_executions(2, trigger_id=once["id"])
    by_always = await router.wait_executions(4, trigger_id=always["id"])
    assert sorted(e["item_id"] for e in by_once) == sorted([first.id, second.id])
    assert sorted(e["item_id"] for e in by_always) == sorted([first.id] * 3 + [second.id])
    await router.predicts(service, 6)


async def test_a_redelivered_event_creates_no_second_execution(router: Router) -> None:
    service = await router.deploy()
    trigger = await router.create_trigger(service, mode="Always")
    item = item_snapshot(router.project_id)
    event = make_event(ItemUpdated(item=item), source="/services/dataset")
    created = make_event(
        ItemCreated(item=item),
        source="/services/dataset",
    )
    duplicates_before = metrics.EVENTS_ROUTED.labels("Created", "duplicate")._value.get()
    base = router.handled()

    # The same envelope three times: twice back to back (likely one batch), once later.
    for _ in range(2):
        await router.publish_raw(DATASET, created.routing_key, created.to_json_bytes())
    await router.wait_handled(base + 2)
    await router.publish_raw(DATASET, created.routing_key, created.to_json_bytes())
    await router.publish_raw(DATASET, event.routing_key, event.to_json_bytes())
    await router.wait_handled(base + 4)

    executions = await router.wait_executions(1, trigger_id=trigger["id"])
    assert executions[0]["event_id"] == created.id
    assert (
        metrics.EVENTS_ROUTED.labels("Created", "duplicate")._value.get() - duplicates_before == 2
    )
    await router.predicts(service, 1)
    assert await router.queue_depth(router.topology.predict_queue(service)) == 0


async def test_trigger_changes_apply_to_the_next_event_without_a_restart(router: Router) -> None:
    service = await router.deploy()
    trigger = await router.create_trigger(service, mode="Always", filter={"name": "a.png"})
    tid = trigger["id"]
    base = router.handled()

    await router.http.post(f"/triggers/{tid}/pause", headers=router.auth())
    await router.item_event(item_snapshot(router.project_id, name="a.png"))
    await router.wait_handled(base + 1)
    assert await router.executions() == []

    await router.http.post(f"/triggers/{tid}/resume", headers=router.auth())
    await router.http.patch(
        f"/triggers/{tid}",
        json={
            "spec": {
                "actions": ["Created", "Deleted"],
                "execution_mode": "Always",
                "filter": {"name": "b.png"},
                "operation": {"type": "predict", "service_id": service},
            }
        },
        headers=router.auth(),
    )
    await router.item_event(item_snapshot(router.project_id, name="a.png"))
    b = item_snapshot(router.project_id, name="b.png")
    await router.item_event(b)
    await router.item_event(b, ItemDeleted)
    await router.wait_handled(base + 4)
    executions = await router.wait_executions(2)
    assert {e["action"] for e in executions} == {"Created", "Deleted"}
    assert {e["item_id"] for e in executions} == {b.id}


async def test_other_projects_items_never_fire_a_trigger(router: Router) -> None:
    service = await router.deploy()
    await router.create_trigger(service, mode="Always")
    other_project, _ = await router.auth_service.new_project()
    base = router.handled()

    await router.item_event(item_snapshot(other_project))
    await router.wait_handled(base + 1)

    assert await router.executions() == []


async def test_poison_events_are_dead_lettered_with_the_reason(router: Router) -> None:
    service = await router.deploy()
    await router.create_trigger(service, mode="Always")
    item = item_snapshot(router.project_id)
    good = make_event(ItemCreated(item=item), source="/services/dataset")
    unknown_version = json.loads(good.to_json_bytes())
    unknown_version["type"] = "prelabel.item.created.v9"
    missing_fields = json.loads(good.to_json_bytes())
    del missing_fields["data"]["item"]["project_id"]
    base = router.handled()

    await router.publish_raw(DATASET, "item.created.v1", json.dumps(unknown_version).encode())
    await router.publish_raw(DATASET, "item.created.v1", json.dumps(missing_fields).encode())
    await router.publish_raw(DATASET, "item.created.v1", b"{not json")
    await router.publish_raw(DATASET, "item.created.v1", good.to_json_bytes())
    await router.wait_handled(base + 4)

    letters = await router.dead_letters("on_item_event", 3)
    reasons = [m.headers[DEAD_LETTER_REASON_HEADER] for m in letters]
    assert reasons[0].startswith("unsupported event type 'prelabel.item.created.v9'")
    assert "data.item.project_id: Field required" in reasons[1]
    assert reasons[2].startswith("body is not JSON")
    # The good event behind the poison still routes.
    await router.wait_executions(1)


async def test_a_filter_that_cannot_compare_is_no_match_counted_not_a_crash(
    router: Router,
) -> None:
    service = await router.deploy()
    await router.create_trigger(service, mode="Always", filter={"metadata.user.score": {"$gt": 5}})
    mismatches = metrics.FILTER_MISMATCHES._value.get()
    base = router.handled()

    text_score = item_snapshot(router.project_id, metadata={"user": {"score": "high"}})
    number_score = item_snapshot(router.project_id, metadata={"user": {"score": 9}})
    await router.item_event(text_score)
    await router.item_event(number_score)
    await router.wait_handled(base + 2)

    [execution] = await router.wait_executions(1)
    assert execution["item_id"] == number_score.id
    assert metrics.FILTER_MISMATCHES._value.get() - mismatches == 1


async def test_events_for_a_trigger_whose_service_is_gone_are_acked(router: Router) -> None:
    service = await router.deploy()
    trigger = await router.create_trigger(service, mode="Always")
    await router.publish(
        MODEL_SERVING, ServiceUndeployed(service_id=service, project_id=router.project_id)
    )

    async def failed() -> bool:
        response = await router.http.get(f"/triggers/{trigger['id']}", headers=router.auth())
        return bool(response.json()["status"] == "failed")

    await wait_until(failed, timeout=10, message="trigger failed")
    base = router.handled()
    await router.item_event(item_snapshot(router.project_id))
    await router.wait_handled(base + 1)

    assert await router.executions() == []
    queue = router.topology.queue("trigger_router", "on_item_event")
    assert await router.queue_depth(queue) == 0
