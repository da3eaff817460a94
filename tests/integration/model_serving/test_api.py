"""The model-serving HTTP API: keys and project scoping, catalog installs, deploy /
patch / undeploy with their events, predict-now, model removal."""

from __future__ import annotations

import uuid

import pytest
import tritonclient.http as triton_http

from common.contracts import PredictRequest
from common.envelope import make_event
from common.messaging import retry_later
from common.testing.waits import wait_until
from common.topology import MODEL_SERVING
from model_serving_service.adapters.queues import QueueDepth
from model_serving_service.deps import Deps as ModelServingDeps
from tests.integration.model_serving.conftest import (
    ModelServingService,
    astronaut_png,
    register_color_model,
    solid,
)


async def test_keys_are_required_and_other_projects_ids_answer_404(
    ms: ModelServingService,
) -> None:
    model = await ms.install("face-detector")
    service = await ms.deploy(model["id"])
    _, other_key = await ms.auth_service.new_project()
    other = ms.auth(other_key)

    assert (await ms.http.get("/models")).status_code == 401
    assert (await ms.http.get("/models", headers=ms.auth("nope"))).status_code == 401
    assert (await ms.http.get("/models", headers=other)).json() == []
    assert (await ms.http.get("/services", headers=other)).json() == []
    for method, url in [
        ("GET", f"/models/{model['id']}"),
        ("DELETE", f"/models/{model['id']}"),
        ("GET", f"/services/{service['id']}"),
        ("DELETE", f"/services/{service['id']}"),
        ("GET", f"/services/{service['id']}/dead-letters"),
    ]:
        response = await ms.http.request(method, url, headers=other)
        assert response.status_code == 404, (method, url, response.text)
    patched = await ms.http.patch(
        f"/services/{service['id']}", json={"max_replicas": 2}, headers=other
    )
    assert patched.status_code == 404
    predicted = await ms.http.post(
        f"/services/{service['id']}/predict-now",
        files={"file": ("a.png", solid((1, 2, 3)), "image/png")},
        headers=other,
    )
    assert predicted.status_code == 404
    with_deploy = await ms.http.post("/services", json={"model_id": model["id"]}, headers=other)
    assert with_deploy.status_code == 404
    assert (await ms.service(service["id"]))["status"] in {"deploying", "ready"}


async def test_catalog_and_install_options(ms: ModelServingService) -> None:
    catalog = (await ms.http.get("/catalog", headers=ms.auth())).json()
    by_name = {entry["name"]: entry for entry in catalog}
    assert set(by_name) == {"digits-classifier", "ocr-text", "face-detector"}
    assert by_name["digits-classifier"]["adapter"] == "classification"
    assert by_name["digits-classifier"]["labels"] == [str(d) for d in range(10)]
    assert by_name["ocr-text"]["adapter"] == "text"
    assert by_name["face-detector"]["labels"] == ["face"]
    assert all(entry["input_type"] == "image" for entry in catalog)

    model = await ms.install(
        "digits-classifier", confidence_threshold=0.6, max_batch_size=8, timeout_seconds=5
    )
    assert model["spec"]["confidence_threshold"] == 0.6
    assert model["spec"]["max_batch_size"] == 8
    config = (ms.settings.model_repository / model["triton_name"] / "config.pbtxt").read_text()
    assert "max_batch_size: 8" in config
    assert "dynamic_batching" in config

    again = await ms.http.post("/catalog/digits-classifier/install", headers=ms.auth())
    assert again.status_code == 409
    assert "already has a model 'digits-classifier'" in again.json()["detail"]
    renamed = await ms.install("digits-classifier", name="digits-b")
    assert renamed["name"] == "digits-b"
    unknown = await ms.http.post("/catalog/resnet/install", headers=ms.auth())
    assert unknown.status_code == 404
    bad_map = await ms.http.post(
        "/catalog/face-detector/install", json={"label_map": {"cat": "x"}}, headers=ms.auth()
    )
    assert bad_map.status_code == 422
    assert "label_map keys ['cat']" in bad_map.json()["detail"]
    listed = (await ms.http.get("/models", headers=ms.auth())).json()
    assert sorted(m["name"] for m in listed) == ["digits-b", "digits-classifier"]


async def test_deploy_and_patch_publish_service_deployed(ms: ModelServingService) -> None:
    model = await ms.install("face-detector")

    service = await ms.deploy(model["id"], max_replicas=2, cooldown_seconds=5)

    assert service["status"] == "deploying"
    assert service["concurrency"] == 16  # two batches of the model's 8
    assert service["queue"] == {
        "name": f"{ms.settings.topology_prefix}predict.{service['id']}",
        "messages": 0,
        "consumers": 0,
        "dead_letters": 0,
    }
    await ms.wait_status(service["id"], "ready")
    patched = await ms.http.patch(
        f"/services/{service['id']}",
        json={"min_replicas": 1, "queue_per_replica": 3},
        headers=ms.auth(),
    )
    assert patched.status_code == 200, patched.text
    invalid = await ms.http.patch(
        f"/services/{service['id']}", json={"min_replicas": 5}, headers=ms.auth()
    )
    assert invalid.status_code == 422
    assert "exceeds max_replicas" in invalid.json()["detail"]

    events = await ms.events.wait_for(3, routing_key="service.deployed.v1")
    data = [e.body["data"] for e in events]
    assert [d["status"] for d in data] == ["deploying", "ready", "ready"]
    assert data[2] | {} == {
        "service_id": service["id"],
        "project_id": ms.project_id,
        "model_id": model["id"],
        "status": "ready",
        "min_replicas": 1,
        "max_replicas": 2,
        "queue_per_replica": 3,
        "cooldown_seconds": 5.0,
        "concurrency": 16,
        "instance_type": "cpu-small",
        "error": None,
    }


async def test_undeploy_serves_the_queue_then_removes_it(ms: ModelServingService) -> None:
    model = await register_color_model(ms)
    service = await ms.deploy(model["id"])
    item = await ms.put_item(solid((250, 0, 0)), "image/png")
    executions = [await ms.send(service["id"], item) for _ in range(5)]

    response = await ms.http.delete(f"/services/{service['id']}", headers=ms.auth())
    assert response.status_code == 202
    assert response.json()["status"] == "undeploying"
    async with ms.worker(service["id"]) as worker:
        await ms.events.wait_for(1, routing_key="service.undeployed.v1", timeout=30)
        # The router stops replicas when it learns of the undeploy; here the test does.
        worker.request_stop()

    async def queue_gone() -> bool:
        return await ms.runtime.deps_as(ModelServingDeps).usecases.queues.depth(queue) is None

    queue = f"{ms.settings.topology_prefix}predict.{service['id']}"
    await wait_until(queue_gone, timeout=30, message="work queue deleted")
    outcomes = await ms.wait_outcomes(executions)
    assert {o["type"] for o in outcomes.values()} == {"prelabel.prediction.completed.v1"}
    assert (await ms.http.get(f"/services/{service['id']}", headers=ms.auth())).status_code == 404
    # The model is free again: it can be removed.
    removed = await ms.http.delete(f"/models/{model['id']}", headers=ms.auth())
    assert removed.status_code == 204
    assert not (ms.settings.model_repository / model["triton_name"]).exists()


async def test_undeploy_fails_requests_nobody_served(ms: ModelServingService) -> None:
    model = await register_color_model(ms)
    service = await ms.deploy(model["id"])
    in_use = await ms.http.delete(f"/models/{model['id']}", headers=ms.auth())
    assert in_use.status_code == 409
    item = await ms.put_item(solid((250, 0, 0)), "image/png")
    executions = [await ms.send(service["id"], item) for _ in range(3)]
    usecases = ms.runtime.deps_as(ModelServingDeps).usecases
    usecases.settings = usecases.settings.model_copy(update={"undeploy_drain_seconds": 0.2})

    await ms.http.delete(f"/services/{service['id']}", headers=ms.auth())

    outcomes = await ms.wait_outcomes(executions, timeout=30)
    for outcome in outcomes.values():
        assert outcome["type"] == "prelabel.prediction.failed.v1"
        assert outcome["data"]["reason"] == (
            f"service {service['id']} was undeployed before the request ran"
        )
    await ms.events.wait_for(1, routing_key="service.undeployed.v1")


async def test_predict_now_loads_the_model_for_one_call(
    ms: ModelServingService, triton_url: str
) -> None:
    model = await ms.install("face-detector")
    service = await ms.deploy(model["id"])
    await ms.wait_status(service["id"], "ready")

    response = await ms.http.post(
        f"/services/{service['id']}/predict-now",
        files={"file": ("astronaut.png", astronaut_png(), "image/png")},
        headers=ms.auth(),
    )
    wrong = await ms.http.post(
        f"/services/{service['id']}/predict-now",
        files={"file": ("notes.txt", b"hello there", "text/plain")},
        headers=ms.auth(),
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert [(a["type"], a["label"]) for a in body["annotations"]] == [("box", "face")]
    assert body["latency_ms"] > 0
    assert wrong.status_code == 422
    assert wrong.json()["detail"] == "item is text/plain, but the model takes images (image/*)"
    client = triton_http.InferenceServerClient(triton_url)
    try:
        # Nobody holds it after the call: it is unloaded again (scale to zero).
        async def unloaded() -> bool:
            return not client.is_model_ready(model["triton_name"])

        await wait_until(unloaded, timeout=20, message="model unloaded after predict-now")
    finally:
        client.close()


@pytest.mark.parametrize("ms_overrides", [{"retry_delays": (30.0,)}])
async def test_undeploy_fails_requests_waiting_in_a_retry_queue(ms: ModelServingService) -> None:
    model = await register_color_model(ms)
    service = await ms.deploy(model["id"])
    item = await ms.put_item(solid((250, 0, 0)), "image/png")
    usecases = ms.runtime.deps_as(ModelServingDeps).usecases
    usecases.settings = usecases.settings.model_copy(update={"undeploy_drain_seconds": 0.2})
    queue = usecases.queues.queue_name(service["id"])
    # A request a worker handed to the retry queue (Triton away): it waits out 30 s there.
    waiting = f"exe_{uuid.uuid4().hex[:12]}"
    request = PredictRequest(
        execution_id=waiting, service_id=service["id"], project_id=ms.project_id, item=item
    )
    body = make_event(request, source="/services/trigger-router").to_json_bytes()
    runtime = ms.runtime
    scheduled = await retry_later(
        runtime.broker, runtime.topology, MODEL_SERVING, queue, body, "Triton is unreachable"
    )
    assert scheduled
    assert (await usecases.queues.depth(f"{queue}.retry.30000ms")) == QueueDepth(1, 0)

    await ms.http.delete(f"/services/{service['id']}", headers=ms.auth())

    outcome = (await ms.wait_outcomes([waiting], timeout=30))[waiting]
    assert outcome["type"] == "prelabel.prediction.failed.v1"
    assert outcome["data"]["reason"] == (
        f"service {service['id']} was undeployed before the request ran"
    )
    await ms.events.wait_for(1, routing_key="service.undeployed.v1")

    async def retry_queue_gone() -> bool:
        return await usecases.queues.depth(f"{queue}.retry.30000ms") is None

    await wait_until(retry_queue_gone, timeout=30, message="retry queue deleted")
