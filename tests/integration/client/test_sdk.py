"""The SDK against the five real services: typed answers, errors by class, pagination."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

import pytest

from common.testing.servers import free_port
from prelabel_client.errors import (
    AuthError,
    NotFoundError,
    ServiceUnreachableError,
    ValidationError,
)
from prelabel_client.models import Operation, TriggerSpec
from prelabel_client.sdk import Prelabel
from prelabel_client.sync import SyncPrelabel
from tests.integration.client.conftest import Project, noisy_jpeg
from tests.integration.client.stack import RunningStack


async def test_datasets_items_tasks_and_budget_round_trip_with_typed_answers(
    project: Project,
) -> None:
    client = project.client
    assert await client.whoami() == project.project_id
    dataset = await client.datasets.create("sdk", "typed")
    for index in range(5):
        await client.items.upload(dataset.id, noisy_jpeg(index), f"{index}.jpg", remote_dir="/a")

    listed = [item async for item in client.items.iter(dataset.id, {"dir": "/a"}, page_size=2)]
    task = await client.tasks.create("review sdk", dataset.id)
    added = await client.tasks.add_items(task.id, [listed[0].id])
    budget = await client.billing.set_budget("12.50")
    topped = await client.billing.top_up(Decimal("2.5"))

    assert len(listed) == 5
    assert (await client.datasets.resolve("sdk")).item_count == 5
    assert await client.items.download(listed[0].id) == noisy_jpeg(0)
    assert [t.id for t in await client.tasks.list()] == [task.id]
    assert added == [listed[0].id]
    assert (await client.tasks.progress(task.id)).counts["pending-review"] == 1
    assert (budget.budget, topped.budget) == (Decimal("12.50"), Decimal("15.00"))
    assert (await client.billing.burn_rate()).running_replicas == 0
    assert await client.executions.counts() == dict.fromkeys(
        [
            "created",
            "queued",
            "in-progress",
            "success",
            "failed",
            "waiting-for-budget",
            "cancelled",
        ],
        0,
    )


async def test_errors_carry_the_services_message_and_class(
    project: Project, stack: RunningStack
) -> None:
    client = project.client
    with pytest.raises(NotFoundError) as missing:
        await client.tasks.get("task_nope")
    spec = TriggerSpec(operation=Operation(service_id="svc_nope"))
    with pytest.raises(NotFoundError) as no_service:
        await client.triggers.create("t", spec)
    bad_filter = TriggerSpec(
        filter={"metadata.user.score": {"$gt": [1]}}, operation=Operation(service_id="svc_nope")
    )
    with pytest.raises(ValidationError) as refused:
        await client.triggers.create("t", bad_filter)
    async with Prelabel(stack.proxied, "not-a-key") as stranger:
        with pytest.raises(AuthError) as bad_key:
            await stranger.billing.budget()

    assert missing.value.exit_code == 5
    assert "task_nope" in missing.value.message
    assert missing.value.service == "annotation"
    assert "svc_nope" in no_service.value.message
    assert no_service.value.service == "trigger-router"
    assert "invalid filter at /metadata.user.score/$gt" in refused.value.message
    assert refused.value.exit_code == 2
    assert bad_key.value.status_code == 401
    assert bad_key.value.message == "invalid API key"


async def test_an_unreachable_service_is_named_with_its_url(project: Project) -> None:
    endpoints = project.stack.proxied
    gone = f"http://127.0.0.1:{free_port()}"
    async with Prelabel(replace(endpoints, billing=gone), project.api_key) as client:
        with pytest.raises(ServiceUnreachableError) as caught:
            await client.billing.budget()

    assert caught.value.url == gone
    assert f"cannot reach the billing service at {gone}" in str(caught.value)
    assert caught.value.exit_code == 7


async def test_the_sync_client_runs_the_same_calls_without_an_event_loop(
    project: Project,
) -> None:
    def script() -> tuple[str, list[str]]:
        # A plain script: no event loop of its own (run in a thread, as the services
        # serve from this test's loop).
        with SyncPrelabel(project.stack.url, project.api_key) as client:
            dataset = client.datasets.create("sync")
            client.items.upload(dataset.id, noisy_jpeg(9), "x.jpg")
            names = [item.filename for item in client.items.iter(dataset.id)]
            return client.whoami(), names

    project_id, names = await asyncio.to_thread(script)

    assert project_id == project.project_id
    assert names == ["/x.jpg"]
