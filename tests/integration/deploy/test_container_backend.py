"""The router's container backend (``docker``) over real HTTP against a stand-in for the
Docker Engine API: request shapes only (paths, query, bodies), so it runs everywhere;
tests/integration/deploy/test_compose_stack.py runs it against real Podman."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from common.testing.servers import serve_app
from trigger_router_service.adapters.containers import (
    API,
    ROLE_LABEL,
    SERVICE_LABEL,
    STACK_LABEL,
    WORKER_ALIAS,
    ContainerScaler,
)
from trigger_router_service.adapters.scalers import ScalerError, ServiceRef

SERVICE = ServiceRef("svc_01ABC", "prj_1")


@dataclass
class FakeEngine:
    """Containers by id, as the engine would list them."""

    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)
    stops: list[tuple[str, str]] = field(default_factory=list)
    images: set[str] = field(default_factory=lambda: {"prelabel/model-serving-worker:dev"})
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get(API + "/containers/json")
        async def list_(request: Request) -> JSONResponse:
            assert request.query_params["all"] == "true"
            wanted = json.loads(request.query_params["filters"])["label"]
            items = [
                c
                for c in self.containers.values()
                if all(c["Labels"].get(k) == v for k, _, v in (w.partition("=") for w in wanted))
            ]
            return JSONResponse(items)

        @app.post(API + "/containers/create")
        async def create(request: Request) -> JSONResponse:
            body = await request.json()
            if body["Image"] not in self.images:
                return JSONResponse({"message": "no such image"}, status_code=404)
            self.created.append({"name": request.query_params["name"], **body})
            cid = f"{next(self._ids):064x}"
            self.containers[cid] = {
                "Id": cid,
                "Labels": body["Labels"],
                "State": "created",
                "Created": len(self.containers),
            }
            return JSONResponse({"Id": cid, "Warnings": []}, status_code=201)

        @app.post(API + "/containers/{cid}/start")
        async def start(cid: str) -> Response:
            self.containers[cid]["State"] = "running"
            return Response(status_code=204)

        @app.post(API + "/containers/{cid}/stop")
        async def stop(cid: str, request: Request) -> Response:
            self.stops.append((cid, request.query_params["t"]))
            self.containers[cid]["State"] = "exited"
            return Response(status_code=204)

        @app.delete(API + "/containers/{cid}")
        async def delete(cid: str) -> Response:
            self.containers.pop(cid, None)
            return Response(status_code=204)

        return app


@pytest.fixture
async def engine() -> AsyncIterator[tuple[FakeEngine, str]]:
    fake = FakeEngine()
    async with serve_app(fake.app()) as url:
        yield fake, url


def _scaler(url: str, **overrides: Any) -> ContainerScaler:
    values: dict[str, Any] = {
        "image": "prelabel/model-serving-worker:dev",
        "stack": "prelabel",
        "network": "prelabel",
        "base_env": {"MODEL_SERVING_AMQP_URL": "amqp://x", "PATH": "/router/bin", "DATASET_X": "1"},
        "extra_env": {"MODEL_SERVING_TRITON_GRPC_URL": "triton:8001"},
        "stop_seconds": 7,
    }
    values.update(overrides)
    return ContainerScaler(httpx.AsyncClient(base_url=url), **values)


async def test_scale_starts_worker_containers_with_the_worker_settings(
    engine: tuple[FakeEngine, str],
) -> None:
    fake, url = engine
    scaler = _scaler(url)
    try:
        await scaler.scale(SERVICE, 2)
        assert await scaler.actual([SERVICE]) == {SERVICE.service_id: 2}
    finally:
        await scaler.close()
    first = fake.created[0]
    env = dict(line.split("=", 1) for line in first["Env"])
    assert env["MODEL_SERVING_AMQP_URL"] == "amqp://x"
    assert env["MODEL_SERVING_TRITON_GRPC_URL"] == "triton:8001"
    assert env["MODEL_SERVING_WORKER_SERVICE_ID"] == SERVICE.service_id
    assert env["MODEL_SERVING_WORKER_REPLICA_ID"].startswith("rep_")
    assert "PATH" not in env, "the worker image keeps its own PATH"
    assert "DATASET_X" not in env
    assert first["Labels"][ROLE_LABEL] == "predict-worker"
    assert first["Labels"][STACK_LABEL] == "prelabel"
    assert first["Labels"][SERVICE_LABEL] == SERVICE.service_id
    assert first["HostConfig"]["NetworkMode"] == "prelabel"
    assert first["HostConfig"]["Init"] is True
    assert first["NetworkingConfig"]["EndpointsConfig"]["prelabel"]["Aliases"] == [WORKER_ALIAS]
    assert first["name"].startswith("prelabel-worker-svc_01abc-rep_")


async def test_scale_down_stops_the_newest_and_a_new_leader_adopts_the_rest(
    engine: tuple[FakeEngine, str],
) -> None:
    fake, url = engine
    scaler = _scaler(url)
    await scaler.scale(SERVICE, 3)
    oldest = min(fake.containers.values(), key=lambda c: c["Created"])["Id"]
    await scaler.scale(SERVICE, 1)
    await scaler.close()  # waits for the stops in flight
    assert [t for _, t in fake.stops] == ["7", "7"]
    assert list(fake.containers) == [oldest]
    # Another router (the next leader) sees the running container as its own.
    successor = _scaler(url)
    try:
        assert await successor.actual([SERVICE]) == {SERVICE.service_id: 1}
        await successor.scale(SERVICE, 1)
        assert len(fake.created) == 3, "nothing new started"
    finally:
        await successor.close()


async def test_a_container_that_exited_on_its_own_is_replaced(
    engine: tuple[FakeEngine, str],
) -> None:
    fake, url = engine
    scaler = _scaler(url)
    try:
        await scaler.scale(SERVICE, 1)
        [crashed] = fake.containers
        fake.containers[crashed]["State"] = "exited"
        assert await scaler.actual([SERVICE]) == {SERVICE.service_id: 0}
        await scaler.sync()
        assert crashed not in fake.containers
        assert await scaler.actual([SERVICE]) == {SERVICE.service_id: 1}
        assert scaler.restarts == 1
    finally:
        await scaler.close()


async def test_other_stacks_containers_are_left_alone(engine: tuple[FakeEngine, str]) -> None:
    fake, url = engine
    other = _scaler(url, stack="staging")
    mine = _scaler(url)
    try:
        await other.scale(SERVICE, 1)
        assert await mine.actual([SERVICE]) == {SERVICE.service_id: 0}
        await mine.scale(SERVICE, 0)
        assert len(fake.containers) == 1
    finally:
        await other.close()
        await mine.close()


async def test_a_missing_image_or_engine_is_a_scaler_error(
    engine: tuple[FakeEngine, str],
) -> None:
    _, url = engine
    scaler = _scaler(url, image="prelabel/nope:dev")
    try:
        with pytest.raises(ScalerError, match="not found"):
            await scaler.scale(SERVICE, 1)
    finally:
        await scaler.close()
    gone = ContainerScaler.connect(
        "unix:///nonexistent/engine.sock", image="x", stack="s", network=None, base_env={}
    )
    try:
        with pytest.raises(ScalerError, match="unreachable"):
            await gone.actual([SERVICE])
    finally:
        await gone.close()
