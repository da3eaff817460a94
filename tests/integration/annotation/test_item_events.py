"""Item events reach the annotation service's item facts in batches: every v1 item event
of a burst lands, several events of one item merge by the newest snapshot (whatever the
order), a deletion is final, and an event that is not an item event is dead-lettered."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from common.contracts import ItemDeleted, ItemUpdated
from common.envelope import make_event
from common.testing.waits import wait_until
from tests.integration.annotation.conftest import AnnotationService, item_created


async def test_a_burst_of_item_events_lands_once_each_newest_snapshot_winning(
    annotation_service: AnnotationService,
) -> None:
    svc = annotation_service
    created = [
        item_created(svc.project_id, svc.ds1, f"it_{n}", f"f{n}.png", 10 + n, 20 + n)
        for n in range(40)
    ]
    first = created[0].data.item
    renamed = first.model_copy(
        update={"filename": "/renamed.png", "updated_at": first.updated_at + timedelta(seconds=5)}
    )
    older = first.model_copy(
        update={"filename": "/older.png", "updated_at": first.updated_at - timedelta(seconds=5)}
    )
    gone = created[1].data.item
    events = [
        *created,
        make_event(ItemUpdated(item=renamed), source="/services/dataset", subject=first.id),
        make_event(ItemUpdated(item=older), source="/services/dataset", subject=first.id),
        make_event(ItemDeleted(item=gone), source="/services/dataset", subject=gone.id),
    ]
    before = svc.runtime.metrics.messages.labels("on_item_event", "ok")._value.get()

    await asyncio.gather(*(svc.publish(e) for e in events))

    async def all_handled() -> bool:
        done = svc.runtime.metrics.messages.labels("on_item_event", "ok")._value.get()
        return bool(done - before >= len(events))

    await wait_until(all_handled, timeout=20, message="every item event handled")
    rows = {
        r["id"]: r
        for r in await svc.runtime.pool.fetch(
            "SELECT id, filename, width, height, deleted FROM items WHERE project_id = $1",
            svc.project_id,
        )
    }
    assert len(rows) == 40
    assert rows[first.id]["filename"] == "/renamed.png"
    assert rows[gone.id]["deleted"] is True
    assert (rows["it_7"]["width"], rows["it_7"]["height"]) == (17, 27)
    assert sum(r["deleted"] for r in rows.values()) == 1
