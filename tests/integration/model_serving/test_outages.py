"""Outages of what model-serving depends on (the broker, Triton, PostgreSQL) and slow
model loads: the service and its replicas recover by themselves, nothing stays failed or
lost, and every request still gets an outcome."""

from __future__ import annotations

import pytest

from common.testing.servers import free_port
from common.testing.waits import wait_until
from model_serving_service.adapters.queues import PredictQueues
from model_serving_service.deps import Deps as ModelServingDeps
from model_serving_service.domain.errors import UnavailableError
from tests.integration.model_serving.conftest import (
    ModelServingService,
    close_broker_connections,
    register_color_model,
)


def _deps(ms: ModelServingService) -> ModelServingDeps:
    return ms.runtime.deps_as(ModelServingDeps)


async def test_deploy_works_again_after_the_broker_drops_the_queue_managers_connection(
    ms: ModelServingService,
) -> None:
    model = await register_color_model(ms)
    queues = _deps(ms).usecases.queues
    _deps(ms).usecases.settings = ms.settings.model_copy(update={"undeploy_drain_seconds": 0.2})
    # A service deployed and undeployed: its queue was probed (passive declares), then
    # deleted. A robust connection declares such queues again when it reconnects.
    gone = await ms.deploy(model["id"])
    await ms.http.delete(f"/services/{gone['id']}", headers=ms.auth())
    await ms.events.wait_for(1, routing_key="service.undeployed.v1", timeout=30)

    async def queue_deleted() -> bool:
        return await queues.depth(queues.queue_name(gone["id"])) is None

    await wait_until(queue_deleted, timeout=30, message="work queue deleted")

    assert await close_broker_connections(queues.connection_name) == 1

    async def ready() -> bool:
        response = await ms.http.get("/readyz")
        return response.status_code == 200 and response.json()["checks"].get("queues") == "ok"

    await wait_until(ready, timeout=20, message="ready again, queue manager included")
    deployed = await ms.http.post("/services", json={"model_id": model["id"]}, headers=ms.auth())
    assert deployed.status_code == 201, deployed.text
    listed = await ms.http.get(f"/services/{deployed.json()['id']}", headers=ms.auth())
    assert listed.json()["queue"]["messages"] == 0


async def test_queue_manager_readiness_fails_while_the_broker_is_unreachable(
    ms: ModelServingService,
) -> None:
    dead = PredictQueues(
        f"amqp://guest:guest@127.0.0.1:{free_port()}/", ms.topology, connect_timeout=2
    )
    try:
        with pytest.raises(UnavailableError, match="the broker cannot be reached"):
            await dead.ping()
    finally:
        await dead.close()
    assert (await ms.http.get("/readyz")).json()["checks"]["queues"] == "ok"
