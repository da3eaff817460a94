"""How a predict worker fails: every request gets exactly one outcome, with a reason,
and requests that can never succeed do not reach Triton or block the queue."""

from __future__ import annotations

import asyncio
from typing import Any

import tritonclient.http as triton_http

from common.testing.servers import free_port
from common.testing.waits import wait_until
from tests.integration.model_serving.conftest import (
    COLOR_SPEC,
    ModelServingService,
    register_color_model,
    solid,
)


def inference_count(triton_url: str, triton_name: str) -> int:
    client = triton_http.InferenceServerClient(triton_url)
    try:
        stats: dict[str, Any] = client.get_inference_statistics(triton_name)
    finally:
        client.close()
    return sum(int(m.get("inference_count", 0)) for m in stats.get("model_stats", []))


async def _quiet(ms: ModelServingService, service_id: str, worker: Any) -> None:
    """Wait until the queue is empty, the worker holds nothing and the outbox is sent."""

    async def settled() -> bool:
        queue = (await ms.service(service_id))["queue"]
        pending = await ms.runtime.pool.fetchval("SELECT count(*) FROM outbox")
        return queue["messages"] == 0 and not worker.held and pending == 0

    await wait_until(settled, timeout=30, message="queue drained and outbox sent")


async def test_unfit_items_fail_at_once_and_poison_is_dead_lettered_without_reaching_triton(
    ms: ModelServingService, triton_url: str
) -> None:
    model = await register_color_model(ms)
    service = await ms.deploy(model["id"])
    text = await ms.put_item(b"just some words\n", "text/plain", name="notes.txt")
    broken = await ms.put_item(
        b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20, "image/png", name="x.png"
    )

    async with ms.worker(service["id"]) as worker:
        await worker.wait_ready(30)
        wrong, undecodable = (
            await ms.send(service["id"], text),
            await ms.send(service["id"], broken),
        )
        await ms.send(service["id"], text, body=b"{not json")
        outcomes = await ms.wait_outcomes([wrong, undecodable])
        await _quiet(ms, service["id"], worker)
        inferences = inference_count(triton_url, model["triton_name"])

    assert outcomes[wrong]["type"] == "prelabel.prediction.failed.v1"
    assert outcomes[wrong]["data"]["reason"] == (
        "item is text/plain, but the model takes images (image/*)"
    )
    assert outcomes[wrong]["data"]["retryable"] is False
    assert outcomes[undecodable]["type"] == "prelabel.prediction.failed.v1"
    assert outcomes[undecodable]["data"]["reason"].startswith("cannot decode image")
    assert inferences == 0
    # The undecodable one is also kept in the dead-letter queue, with its reason.
    letters = (
        await ms.http.get(f"/services/{service['id']}/dead-letters", headers=ms.auth())
    ).json()
    # So is the message that is not even JSON (no outcome is possible for it).
    by_reason = sorted((d["reason"][:19], d["execution_id"], d["body"][:9]) for d in letters)
    assert by_reason[0] == ("body is not JSON: E", None, "{not json")
    assert by_reason[1][:2] == ("cannot decode image", undecodable)
    assert len(by_reason) == 2


async def test_duplicate_requests_get_one_outcome(ms: ModelServingService) -> None:
    model = await register_color_model(ms)
    service = await ms.deploy(model["id"])
    red = await ms.put_item(solid((255, 0, 0)), "image/png")

    async with ms.worker(service["id"]) as worker:
        await worker.wait_ready(30)
        execution = await ms.send(service["id"], red)
        await ms.send(service["id"], red, execution_id=execution)
        await ms.wait_outcomes([execution])
        await ms.send(service["id"], red, execution_id=execution)  # after the outcome, too
        await _quiet(ms, service["id"], worker)
        # Outcomes are relayed in order: once a later one arrived, any duplicate would have.
        sentinel = await ms.send(service["id"], red)
        await ms.wait_outcomes([sentinel])

    assert len(ms.outcomes(execution)) == 1


async def test_unreachable_triton_is_retried_then_failed_and_dead_lettered(
    ms: ModelServingService,
) -> None:
    model = await register_color_model(ms)
    service = await ms.deploy(model["id"])
    red = await ms.put_item(solid((255, 0, 0)), "image/png")
    dead_port = free_port()

    # Model control still works (HTTP); inference (gRPC) goes to a port nobody listens on.
    async with ms.worker(service["id"], triton_grpc_url=f"127.0.0.1:{dead_port}") as worker:
        await worker.wait_ready(30)
        execution = await ms.send(service["id"], red)
        outcome = (await ms.wait_outcomes([execution], timeout=30))[execution]
        await _quiet(ms, service["id"], worker)

    assert outcome["type"] == "prelabel.prediction.failed.v1"
    data = outcome["data"]
    assert data["retryable"] is True
    assert f"Triton is unreachable at 127.0.0.1:{dead_port}" in data["reason"]
    # retry_delays=(0.05, 0.1): tried once, then after each delay, before the worker gave up.
    assert "gave up after 2 delayed retries" in data["reason"]
    assert await ms.dead_letter_count(service["id"]) == 1
    assert len(ms.outcomes(execution)) == 1


async def test_slow_model_fails_with_timeout(ms: ModelServingService) -> None:
    model = await register_color_model(
        ms, spec={**COLOR_SPEC, "timeout_seconds": 0.5}, sleep_execute=2
    )
    service = await ms.deploy(model["id"])
    red = await ms.put_item(solid((255, 0, 0)), "image/png")

    async with ms.worker(service["id"]) as worker:
        await worker.wait_ready(30)
        execution = await ms.send(service["id"], red)
        outcome = (await ms.wait_outcomes([execution], timeout=20))[execution]

    assert outcome["type"] == "prelabel.prediction.failed.v1"
    assert outcome["data"]["reason"].startswith("timeout: Triton did not answer within")
    assert outcome["data"]["retryable"] is True


async def test_timeout_covers_the_model_load(ms: ModelServingService) -> None:
    model = await register_color_model(
        ms, spec={**COLOR_SPEC, "timeout_seconds": 1.0}, sleep_initialize=2.5
    )
    service = await ms.deploy(model["id"])
    red = await ms.put_item(solid((255, 0, 0)), "image/png")

    async with ms.worker(service["id"]) as worker:
        # Cold start: the worker consumes while Triton spends 2.5 s loading the model.
        early = await ms.send(service["id"], red)
        first = (await ms.wait_outcomes([early], timeout=20))[early]
        await worker.wait_ready(30)
        late = await ms.send(service["id"], red)
        second = (await ms.wait_outcomes([late], timeout=20))[late]

    assert first["type"] == "prelabel.prediction.failed.v1"
    assert first["data"]["reason"].startswith("timeout: model ")
    assert "was not loaded within the model's 1s timeout" in first["data"]["reason"]
    assert second["type"] == "prelabel.prediction.completed.v1"


async def test_one_item_the_model_rejects_does_not_fail_its_batch(
    ms: ModelServingService,
) -> None:
    model = await register_color_model(ms)
    service = await ms.deploy(model["id"], concurrency=8)
    items = [
        await ms.put_item(solid(color), "image/png", name=f"{i}.png")
        for i, color in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (250, 5, 5)])
    ]

    async with ms.worker(service["id"]) as worker:
        await worker.wait_ready(30)
        executions = await asyncio.gather(*(ms.send(service["id"], item) for item in items))
        outcomes = await ms.wait_outcomes(list(executions))

    kinds = [outcomes[e]["type"].removeprefix("prelabel.prediction.") for e in executions]
    assert kinds == ["completed.v1", "failed.v1", "completed.v1", "completed.v1"]
    assert "green images are not supported" in outcomes[executions[1]]["data"]["reason"]
    assert outcomes[executions[1]]["data"]["retryable"] is False
