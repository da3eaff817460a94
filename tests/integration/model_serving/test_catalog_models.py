"""Each catalog model installed, deployed and predicting through a worker on the real
Triton, on sample images made here (held-out digits, rendered text, a real photo)."""

from __future__ import annotations

import re

from tests.integration.model_serving.conftest import (
    ModelServingService,
    astronaut_png,
    held_out_digits,
    text_image,
)


def _words(text: str) -> str:
    return re.sub(r"\s+", "", text).upper()


async def test_digits_classifier_classifies_held_out_digits_in_batches(
    ms: ModelServingService,
) -> None:
    model = await ms.install("digits-classifier", label_map={"7": "seven"})
    service = await ms.deploy(model["id"], concurrency=16)
    samples = held_out_digits(12)
    items = [
        await ms.put_item(data, "image/png", name=f"d{i}.png")
        for i, (_, data) in enumerate(samples)
    ]

    async with ms.worker(service["id"]) as worker:
        executions = [await ms.send(service["id"], item) for item in items]
        outcomes = await ms.wait_outcomes(executions)
        assert worker.batch_size == 16

    correct = 0
    for (digit, _), execution, item in zip(samples, executions, items, strict=True):
        outcome = outcomes[execution]
        assert outcome["type"] == "prelabel.prediction.completed.v1", outcome
        data = outcome["data"]
        assert data["item_id"] == item.id
        assert data["model"] == {
            "name": "digits-classifier",
            "model_id": model["id"],
            "version": "1",
        }
        (annotation,) = data["annotations"]
        assert annotation["type"] == "classification"
        assert annotation["coordinates"] is None
        assert 0.0 <= annotation["confidence"] <= 1.0
        expected = "seven" if digit == 7 else str(digit)
        correct += annotation["label"] == expected
    # Held-out writers: the model is right on ~90% of them.
    assert correct >= 10, f"{correct}/12 held-out digits classified correctly"
    ready = await ms.wait_status(service["id"], "ready")
    assert ready["error"] is None


async def test_ocr_text_reads_rendered_lines(ms: ModelServingService) -> None:
    model = await ms.install("ocr-text")
    service = await ms.deploy(model["id"])
    item = await ms.put_item(text_image(["INVOICE 2024-117", "Total due: 42.50 EUR"]), "image/png")

    async with ms.worker(service["id"]):
        execution = await ms.send(service["id"], item)
        outcome = (await ms.wait_outcomes([execution], timeout=90))[execution]

    assert outcome["type"] == "prelabel.prediction.completed.v1", outcome
    annotations = outcome["data"]["annotations"]
    assert [a["type"] for a in annotations] == ["text", "text"]
    assert [_words(a["text"]) for a in annotations] == ["INVOICE2024-117", "TOTALDUE:42.50EUR"]
    for annotation in annotations:
        assert annotation["label"] == "text"
        assert annotation["confidence"] >= 0.5
        quad = annotation["coordinates"]
        assert len(quad) == 4
        assert all(0 <= x <= 720 and 0 <= y <= 200 for x, y in quad)
    # Lines top to bottom.
    assert annotations[0]["coordinates"][0][1] < annotations[1]["coordinates"][0][1]


async def test_face_detector_finds_the_astronauts_face(ms: ModelServingService) -> None:
    model = await ms.install("face-detector")
    service = await ms.deploy(model["id"])
    photo = await ms.put_item(astronaut_png(), "image/png", name="astronaut.png")

    async with ms.worker(service["id"]):
        execution = await ms.send(service["id"], photo)
        outcome = (await ms.wait_outcomes([execution]))[execution]

    assert outcome["type"] == "prelabel.prediction.completed.v1", outcome
    (face,) = outcome["data"]["annotations"]
    assert face["type"] == "box"
    assert face["label"] == "face"
    assert 0.5 <= face["confidence"] <= 1.0
    (x1, y1), (x2, y2) = face["coordinates"]
    # Her face is at about x 177..272, y 66..161 of the 512x512 photo.
    assert 150 <= x1 <= 200
    assert 40 <= y1 <= 90
    assert 250 <= x2 <= 300
    assert 140 <= y2 <= 190
