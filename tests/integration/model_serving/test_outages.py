"""Outages of what model-serving depends on (the broker, Triton, PostgreSQL) and slow
model loads: the service and its replicas recover by themselves, nothing stays failed or
lost, and every request still gets an outcome."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

import pytest
import tritonclient.http as triton_http
from yarl import URL

from common.envelope import utcnow
from common.testing.servers import free_port
from common.testing.waits import wait_until
from model_serving_service.adapters.queues import PredictQueues
from model_serving_service.adapters.triton import TritonControl
from model_serving_service.deps import Deps as ModelServingDeps
from model_serving_service.domain.errors import UnavailableError
from model_serving_service.worker.replica import EXIT_UNAVAILABLE, Worker
from tests.integration.model_serving.conftest import (
    ModelServingService,
    close_broker_connections,
    port_proxy,
    register_color_model,
    solid,
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


# --------------------------------------------------------------------------- Triton away


async def test_replica_waits_for_an_unreachable_triton_and_loads_when_it_is_back(
    ms: ModelServingService, triton_url: str
) -> None:
    model = await register_color_model(ms)
    service = await ms.deploy(model["id"])
    await ms.wait_status(service["id"], "ready")
    red = await ms.put_item(solid((255, 0, 0)), "image/png")

    async with (
        port_proxy(triton_url) as triton,
        ms.worker(
            service["id"],
            triton_http_url=triton.address,
            load_retry_backoff_seconds=0.05,
            load_retry_max_backoff_seconds=0.2,
        ) as worker,
    ):
        execution = await ms.send(service["id"], red)

        async def waiting() -> bool:
            return worker.state.waiting is not None

        await wait_until(waiting, timeout=20, message="the load waits for Triton")
        # An outage, not a model that cannot load: the service stays ready.
        assert (await ms.service(service["id"]))["status"] == "ready"
        assert not worker.state.loaded.is_set()

        await triton.open()
        await worker.wait_ready(30)
        outcome = (await ms.wait_outcomes([execution], timeout=30))[execution]

    assert outcome["type"] == "prelabel.prediction.completed.v1", outcome["data"]
    assert (await ms.service(service["id"]))["status"] == "ready"


async def test_deploy_check_waits_for_an_unreachable_triton(
    ms: ModelServingService, triton_url: str
) -> None:
    model = await register_color_model(ms)
    usecases = _deps(ms).usecases
    usecases.settings = usecases.settings.model_copy(
        update={"load_retry_backoff_seconds": 0.05, "load_retry_max_backoff_seconds": 0.2}
    )
    async with port_proxy(triton_url) as triton:
        real = usecases.holds.control
        usecases.holds.control = TritonControl(triton.address, load_timeout=30)
        try:
            service = await ms.deploy(model["id"])

            async def deploy_recorded() -> bool:
                return len(await ms.events.wait_for(1, routing_key="service.deployed.v1")) > 0

            await wait_until(deploy_recorded, timeout=10, message="deploy recorded")
            deploying = await ms.service(service["id"])
            assert deploying["status"] == "deploying"
            await triton.open()
            ready = await ms.wait_status(service["id"], "ready", timeout=30)
        finally:
            await usecases.holds.control.close()
            usecases.holds.control = real

    assert ready["error"] is None


# --------------------------------------------------------------------------- slow loads


@pytest.mark.parametrize(
    "ms_overrides",
    [{"hold_stale_seconds": 1.0, "janitor_seconds": 0.2, "hold_heartbeat_seconds": 0.2}],
)
async def test_a_load_longer_than_the_hold_horizon_keeps_its_hold_and_its_model(
    ms: ModelServingService, triton_url: str
) -> None:
    model = await register_color_model(ms, sleep_initialize=2.5)
    service = await ms.deploy(model["id"])
    await ms.wait_status(service["id"], "ready", timeout=30)
    red = await ms.put_item(solid((255, 0, 0)), "image/png")
    pool = ms.runtime.pool
    client = triton_http.InferenceServerClient(triton_url)
    try:
        async with ms.worker(service["id"]) as worker:
            await worker.wait_ready(30)
            loaded_at = await pool.fetchval("SELECT clock_timestamp()")

            async def hold_kept_fresh() -> bool:
                # Never unloaded meanwhile: the janitor runs every 0.2 s.
                assert client.is_model_ready(model["triton_name"]), "model was unloaded"
                seen = await pool.fetchval(
                    "SELECT seen_at FROM model_holds WHERE holder_id = $1", worker.replica_id
                )
                return seen is not None and seen > loaded_at + timedelta(seconds=3)

            await wait_until(hold_kept_fresh, timeout=20, message="hold renewed for 3 s")
            execution = await ms.send(service["id"], red)
            outcome = (await ms.wait_outcomes([execution], timeout=30))[execution]
    finally:
        client.close()

    assert outcome["type"] == "prelabel.prediction.completed.v1", outcome["data"]


# --------------------------------------------------------------------------- database away


@pytest.mark.parametrize(
    "ms_overrides",
    [{"hold_stale_seconds": 1.0, "janitor_seconds": 0.2, "hold_heartbeat_seconds": 0.2}],
)
async def test_a_replica_alive_after_a_database_outage_is_not_left_lost(
    ms: ModelServingService, database_url: str
) -> None:
    model = await register_color_model(ms)
    service = await ms.deploy(model["id"])
    await ms.wait_status(service["id"], "ready")
    red = await ms.put_item(solid((255, 0, 0)), "image/png")
    pg = URL(database_url)
    repo = _deps(ms).repo

    async with port_proxy(f"{pg.host}:{pg.port or 5432}", open_now=True) as proxy:
        through_proxy = str(pg.with_host("127.0.0.1").with_port(proxy.port))
        async with ms.worker(service["id"], database_url=through_proxy) as worker:
            await worker.wait_ready(30)
            # The worker's database goes away for longer than the 1 s horizon: the
            # janitor (which still reaches it) marks the replica lost, billing its stop.
            await proxy.close()

            async def lost() -> bool:
                replica = await repo.get_replica(worker.replica_id)
                return replica is not None and replica.state == "lost"

            await wait_until(lost, timeout=20, message="replica marked lost")
            await proxy.open()

            async def alive_again() -> bool:
                replica = await repo.get_replica(worker.replica_id)
                return replica is not None and replica.state == "running"

            await wait_until(alive_again, timeout=30, message="replica running again")
            replica = await repo.get_replica(worker.replica_id)
            assert replica is not None
            assert replica.stopped_at is None
            execution = await ms.send(service["id"], red)
            outcome = (await ms.wait_outcomes([execution], timeout=30))[execution]
        stopped = await repo.get_replica(worker.replica_id)

    assert outcome["type"] == "prelabel.prediction.completed.v1", outcome["data"]
    # Its real stop is billed: a second replica.stopped.v1, later than the first.
    assert stopped is not None
    assert stopped.state == "stopped"
    stops = await ms.events.wait_for(2, routing_key="replica.stopped.v1", timeout=20)
    times = [s.body["data"]["stopped_at"] for s in stops]
    assert times == sorted(times)
    assert times[0] != times[1]


async def test_a_database_outage_during_the_load_does_not_strand_the_replica(
    ms: ModelServingService, database_url: str, triton_url: str
) -> None:
    model = await register_color_model(ms, sleep_initialize=2.5)
    service = await ms.deploy(model["id"])
    await ms.wait_status(service["id"], "ready", timeout=30)
    pg = URL(database_url)
    pool = ms.runtime.pool
    client = triton_http.InferenceServerClient(triton_url)
    try:
        # The deploy check's load is undone: the replica's load is a real one.
        async def unloaded() -> bool:
            return not client.is_model_ready(model["triton_name"])

        await wait_until(unloaded, timeout=20, message="model unloaded after the deploy check")
    finally:
        client.close()

    async with port_proxy(f"{pg.host}:{pg.port or 5432}", open_now=True) as proxy:
        through_proxy = str(pg.with_host("127.0.0.1").with_port(proxy.port))
        async with ms.worker(
            service["id"],
            database_url=through_proxy,
            load_retry_backoff_seconds=0.05,
            load_retry_max_backoff_seconds=0.2,
        ) as worker:

            async def holding() -> bool:
                return bool(
                    await pool.fetchval(
                        "SELECT 1 FROM model_holds WHERE holder_id = $1", worker.replica_id
                    )
                )

            # The load runs (2.5 s) in a transaction on the worker's database connection.
            await wait_until(holding, timeout=20, message="hold recorded")
            await proxy.close()

            async def waiting() -> bool:
                load = worker._tasks[0]
                assert not load.done(), f"the load gave up: {load}"
                return worker.state.waiting is not None

            await wait_until(waiting, timeout=20, message="the load waits for the database")
            await proxy.open()
            await worker.wait_ready(30)
            replica = await _deps(ms).repo.get_replica(worker.replica_id)

    assert replica is not None
    assert replica.state == "running"


# --------------------------------------------------------------------------- broker away


async def test_a_worker_started_while_the_broker_is_away_waits_for_it(
    ms: ModelServingService, amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    model = await register_color_model(ms)
    service = await ms.deploy(model["id"])
    await ms.wait_status(service["id"], "ready")
    red = await ms.put_item(solid((255, 0, 0)), "image/png")
    broker = URL(amqp_url)
    caplog.set_level(logging.INFO, logger="model_serving_service")

    async with port_proxy(f"{broker.host}:{broker.port or 5672}") as proxy:
        through_proxy = str(broker.with_host("127.0.0.1").with_port(proxy.port))
        settings = ms.settings.model_copy(update={"amqp_url": through_proxy})
        worker = Worker(settings, service["id"])
        running = asyncio.create_task(worker.run())
        try:

            def warned() -> list[logging.LogRecord]:
                return [r for r in caplog.records if "unreachable at start-up" in r.message]

            async def waiting() -> bool:
                assert not running.done(), "the worker exited"
                return bool(warned())

            await wait_until(waiting, timeout=20, message="worker waits for the broker")
            await proxy.open()
            await worker.wait_ready(30)
            execution = await ms.send(service["id"], red)
            outcome = (await ms.wait_outcomes([execution], timeout=30))[execution]
            worker.request_stop()
            exit_code = await asyncio.wait_for(running, 30)
        finally:
            worker.request_stop()
            await asyncio.gather(running, return_exceptions=True)

    assert exit_code == 0
    assert outcome["type"] == "prelabel.prediction.completed.v1", outcome["data"]
    assert len(warned()) == 1
    worker_logs = [r for r in caplog.records if r.name.startswith("model_serving_service")]
    assert [r for r in worker_logs if r.exc_info] == []


async def test_a_worker_gives_up_after_its_start_wait_with_exit_3(
    ms: ModelServingService,
) -> None:
    model = await register_color_model(ms)
    service = await ms.deploy(model["id"])
    settings = ms.settings.model_copy(
        update={
            "amqp_url": f"amqp://guest:guest@127.0.0.1:{free_port()}/",
            "worker_start_wait_seconds": 0.5,
        }
    )

    exit_code = await asyncio.wait_for(Worker(settings, service["id"]).run(), 30)

    assert exit_code == EXIT_UNAVAILABLE


# --------------------------------------------------------------------------- killed replicas


async def test_a_killed_replica_is_billed_until_the_heartbeat_it_missed(
    ms: ModelServingService,
) -> None:
    model = await register_color_model(ms)
    service = await ms.deploy(model["id"])
    repo = _deps(ms).repo
    stored = await repo.get_service(service["id"])
    assert stored is not None
    await repo.insert_replica(
        replica_id="rep_killed", service=stored, host="h", pid=1, started_at=utcnow()
    )
    await repo.replica_running("rep_killed")
    # kill -9: its last heartbeat was 10 s ago, nothing since.
    last_seen = await ms.runtime.pool.fetchval(
        "UPDATE replicas SET seen_at = now() - interval '10 seconds' WHERE id = $1 "
        "RETURNING seen_at",
        "rep_killed",
    )

    lost = await repo.expire_lost_replicas(stale_seconds=5, heartbeat_seconds=2)

    assert lost == ["rep_killed"]
    stop = (await ms.events.wait_for(1, routing_key="replica.stopped.v1"))[0].body["data"]
    assert datetime.fromisoformat(stop["stopped_at"]) == last_seen + timedelta(seconds=2)
