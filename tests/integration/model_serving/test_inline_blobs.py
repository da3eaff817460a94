"""Small blobs carried inside the predict request: the worker predicts from those bytes
without reading S3 when they are the item's content (SHA-256), and reads S3, the source
of truth, when they are not."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from common.contracts import ItemSnapshot, PredictRequest, encode_inline_blob
from common.envelope import make_event
from tests.integration.model_serving.conftest import (
    ModelServingService,
    register_color_model,
    solid,
)

RED = solid((255, 0, 0))
BLUE = solid((0, 0, 255))


def counted(name: str, **labels: str) -> float:
    """A model-serving counter's value in this process (the test's worker runs here)."""
    return REGISTRY.get_sample_value(f"prelabel_model_serving_{name}", labels or None) or 0.0


async def send_inline(
    ms: ModelServingService, service_id: str, item: ItemSnapshot, inline: bytes | str
) -> str:
    """A predict request carrying ``inline`` as the item's blob (bytes are encoded, text is
    sent as it is); its execution id."""
    execution_id = f"exe_{uuid.uuid4().hex[:12]}"
    request = PredictRequest(
        execution_id=execution_id,
        service_id=service_id,
        project_id=ms.project_id,
        item=item,
        blob_base64=encode_inline_blob(inline) if isinstance(inline, bytes) else inline,
    )
    event = make_event(request, source="/services/trigger-router", subject=item.id)
    return await ms.send(service_id, item, execution_id=execution_id, body=event.to_json_bytes())


async def delete_blob(ms: ModelServingService, item: ItemSnapshot) -> None:
    await ms.s3.delete_object(Bucket=ms.settings.s3_bucket, Key=item.system.blob_key)


def label(outcome: dict[str, object]) -> str:
    data = outcome["data"]
    assert isinstance(data, dict), outcome
    assert outcome["type"] == "prelabel.prediction.completed.v1", data
    return str(data["annotations"][0]["label"])


async def test_worker_predicts_from_inline_bytes_without_reading_s3(
    ms: ModelServingService,
) -> None:
    model = await register_color_model(ms)
    service = await ms.deploy(model["id"])
    inline_item = await ms.put_item(RED, "image/png", name="inline.png")
    plain_item = await ms.put_item(solid((250, 5, 5)), "image/png", name="plain.png")
    # Gone from S3: only the bytes in the request can answer for the first item, and the
    # second (no inline bytes) must read S3 and find nothing.
    await delete_blob(ms, inline_item)
    await delete_blob(ms, plain_item)
    used, reads = counted("inline_blobs_total", result="used"), counted("blob_reads_total")

    async with ms.worker(service["id"]) as worker:
        await worker.wait_ready(30)
        inline = await send_inline(ms, service["id"], inline_item, RED)
        plain = await ms.send(service["id"], plain_item)
        outcomes = await ms.wait_outcomes([inline, plain])

    assert label(outcomes[inline]) == "red"
    assert outcomes[plain]["type"] == "prelabel.prediction.failed.v1"
    assert outcomes[plain]["data"]["reason"] == (
        f"the blob of item {plain_item.id} is not in the bucket"
    )
    assert counted("inline_blobs_total", result="used") == used + 1
    assert counted("blob_reads_total") == reads + 1


async def test_inline_bytes_that_are_not_the_items_content_fall_back_to_s3(
    ms: ModelServingService,
) -> None:
    model = await register_color_model(ms)
    service = await ms.deploy(model["id"])
    red = await ms.put_item(RED, "image/png", name="red.png")
    other = await ms.put_item(solid((240, 10, 10)), "image/png", name="other.png")
    mismatched = counted("inline_blobs_total", result="mismatch")

    async with ms.worker(service["id"]) as worker:
        await worker.wait_ready(30)
        # Blue bytes for a red item (SHA-256 differs), and text that is not base64: S3's
        # red blob is what the model sees both times.
        tampered = await send_inline(ms, service["id"], red, BLUE)
        garbled = await send_inline(ms, service["id"], other, "not base64 at all!")
        outcomes = await ms.wait_outcomes([tampered, garbled])

    assert label(outcomes[tampered]) == "red"
    assert label(outcomes[garbled]) == "red"
    assert counted("inline_blobs_total", result="mismatch") == mismatched + 2
