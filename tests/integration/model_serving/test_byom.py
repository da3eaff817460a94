"""Bring your own model: validation before anything is written, serving through the
worker and predict-now, and a model that fails to load."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.model_serving.conftest import (
    COLOR_CONFIG,
    COLOR_SPEC,
    ModelServingService,
    color_archive,
    register_color_model,
    solid,
)


async def test_registered_model_serves_through_worker_and_predict_now(
    ms: ModelServingService,
) -> None:
    model = await register_color_model(ms)
    assert model["source"] == "byom"
    assert (ms.settings.model_repository / model["triton_name"] / "1" / "model.py").is_file()
    service = await ms.deploy(model["id"])
    red = await ms.put_item(solid((220, 10, 10)), "image/png", name="red.png")
    blue = await ms.put_item(solid((10, 10, 230), "JPEG", (64, 48)), "image/jpeg", name="blue.jpg")

    async with ms.worker(service["id"]):
        executions = [await ms.send(service["id"], red), await ms.send(service["id"], blue)]
        outcomes = await ms.wait_outcomes(executions)
        # The model is held by the replica: predict-now uses it as it is.
        now = await ms.http.post(
            f"/services/{service['id']}/predict-now",
            files={"file": ("x.png", solid((200, 0, 30)), "image/png")},
            headers=ms.auth(),
        )

    labels = [outcomes[e]["data"]["annotations"][0]["label"] for e in executions]
    assert labels == ["red", "blue"]
    assert all(outcomes[e]["data"]["annotations"][0]["confidence"] > 0.99 for e in executions)
    assert now.status_code == 200, now.text
    assert now.json()["annotations"][0]["label"] == "red"
    assert now.json()["model_id"] == model["id"]


async def _register(ms: ModelServingService, archive: bytes, spec: dict[str, Any]) -> Any:
    return await ms.http.post(
        "/models",
        files={"archive": ("m.tar.gz", archive, "application/gzip")},
        data={"name": "bad", "spec": json.dumps(spec)},
        headers=ms.auth(),
    )


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("name: x", {}, "config.pbtxt does not parse"),
    (
        COLOR_CONFIG.replace('"PIXELS"', '"IMAGE"'),
        {},
        "input tensor 'PIXELS' is not declared in config.pbtxt (declared: ['IMAGE'])",
    ),
    (
        COLOR_CONFIG.replace("dims: [ 2 ]", "dims: [ 3 ]"),
        {},
        "classification needs [2] (one score per label, labels: 2)",
    ),
    (COLOR_CONFIG, {"input": {**COLOR_SPEC["input"], "width": 32}}, "the spec sends [16, 32, 3]"),
    (
        COLOR_CONFIG,
        {"adapter": {"type": "boxes", "outputs": {"boxes": "LOGITS"}}},
        "adapter 'boxes' needs outputs for ['scores']",
    ),
    (COLOR_CONFIG, {"label_map": {"green": "g"}}, "label_map keys ['green'] are not model labels"),
]


async def test_invalid_models_are_refused_with_the_reason(ms: ModelServingService) -> None:
    before = set(ms.settings.model_repository.iterdir())
    for config, spec_changes, expected in INVALID:
        response = await _register(ms, color_archive(config=config), {**COLOR_SPEC, **spec_changes})
        assert response.status_code == 422, response.text
        problems = response.json()["problems"]
        assert any(expected in problem for problem in problems), (expected, problems)
    not_an_archive = await _register(ms, b"plain bytes", COLOR_SPEC)
    assert not_an_archive.status_code == 422
    assert "neither a zip nor a tar" in not_an_archive.json()["detail"]
    assert set(ms.settings.model_repository.iterdir()) == before
    assert (await ms.http.get("/models", headers=ms.auth())).json() == []


async def test_model_that_fails_to_load_marks_the_service_failed_with_tritons_reason(
    ms: ModelServingService,
) -> None:
    model = await register_color_model(ms, fail_initialize=1)
    service = await ms.deploy(model["id"])

    failed = await ms.wait_status(service["id"], "failed")

    assert "weights missing: colors.bin not found" in failed["error"]
    assert "At:" not in failed["error"]  # Triton's Python traceback is cut off
    events = await ms.events.wait_for(2, routing_key="service.deployed.v1")
    assert [e.body["data"]["status"] for e in events] == ["deploying", "failed"]
    assert "weights missing" in events[1].body["data"]["error"]
