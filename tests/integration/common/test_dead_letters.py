"""``GET /dead-letters`` and ``POST /dead-letters/replay`` (``common.dead_letters``), on a
real billing service and RabbitMQ: each project sees and replays only its own dead
letters, secrets redacted; what names no project is shown to nobody; scans are bounded.
Every service serves the two routes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from common.contracts import PredictRequest
from common.dead_letters import death_of, is_secret_name, redact, replay_headers
from common.envelope import make_event
from common.testing.broker import publish_raw
from common.testing.waits import wait_until
from common.topology import BILLING, DEAD_LETTER_REASON_HEADER, MODEL_SERVING, RETRIES_HEADER
from tests.conftest import AuthService
from tests.integration.billing.conftest import BillingService, billing_service, replica_started
from tests.integration.model_serving.conftest import (
    ModelServingService,
    ms,
    ms_overrides,
    register_color_model,
)

__all__ = ["billing_service", "ms", "ms_overrides"]  # fixtures of the services' own tests

HANDLER = "on_replica_started"


def poison(project_id: str, note: str, event_id: str | None = None) -> bytes:
    """A replica.started envelope of a version billing does not read (dead-lettered at
    once), carrying secrets the listing must not show."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id or uuid.uuid4().hex,
            "source": "/services/model-serving",
            "type": "prelabel.replica.started.v9",
            "time": datetime.now(UTC).isoformat(),
            "data": {
                "project_id": project_id,
                "replica_id": note,
                "api_key": "pk_do_not_show",
                "nested": {"password": "hunter2", "s3_key": "uploads/a.png"},
            },
        }
    ).encode()


async def publish(svc: BillingService, body: bytes) -> None:
    await publish_raw(
        svc.amqp_url,
        f"{svc.settings.topology_prefix}{MODEL_SERVING}.events",
        "replica.started.v1",
        body,
    )


async def listing(svc: BillingService, key: str, **params: Any) -> dict[str, Any]:
    response = await svc.http.get("/dead-letters", params=params, headers=svc.auth(key))
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def replay(svc: BillingService, key: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await svc.http.post("/dead-letters/replay", json=body, headers=svc.auth(key))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def wait_for_letters(svc: BillingService, key: str, count: int) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]]:
        letters: list[dict[str, Any]] = (await listing(svc, key))["letters"]
        return letters if len(letters) == count else []

    return await wait_until(enough, message=f"{count} dead letters listed")


async def test_each_project_lists_and_replays_only_its_own_dead_letters(
    billing_service: BillingService, auth_service: AuthService
) -> None:
    svc = billing_service
    key_a = svc.api_key
    project_b, key_b = await auth_service.new_project()
    queue = svc.runtime.topology.queue(BILLING, HANDLER)

    poison_id = uuid.uuid4().hex
    await publish(svc, poison(svc.project_id, "a-poison", poison_id))
    await publish(svc, poison(project_b, "b-poison-1"))
    await publish(svc, poison(project_b, "b-poison-2"))
    await publish(svc, b"{this is not json")
    # A valid start of A's that gave up after its delayed retries (the database was down
    # then; it is up now): replaying it meters the replica.
    fixed = replica_started(svc.project_id, "r-fixed", datetime.now(UTC) - timedelta(seconds=5))
    await publish_raw(
        svc.amqp_url,
        svc.runtime.topology.dead_letter_exchange(BILLING),
        svc.runtime.topology.dead_letter_queue(queue),
        fixed.to_json_bytes(),
        exchange_type="direct",
        headers={
            DEAD_LETTER_REASON_HEADER: "gave up after 11 delayed retries over 368s: "
            "ConnectionRefusedError: database is down",
            RETRIES_HEADER: 11,
        },
    )

    mine = await wait_for_letters(svc, key_a, 2)
    theirs = await wait_for_letters(svc, key_b, 2)
    page = await listing(svc, key_a)
    assert (page["scanned"], page["unattributed"], page["truncated"]) == (5, 1, False)
    assert queue in page["queues"]
    by_id = {letter["id"]: letter for letter in mine}
    assert set(by_id) == {fixed.id, poison_id}
    assert by_id[fixed.id]["reason"].startswith("gave up after 11 delayed retries")
    assert by_id[fixed.id]["retries"] == 11
    assert by_id[fixed.id]["event_type"] == "prelabel.replica.started.v1"
    bad = by_id[poison_id]
    assert bad["queue"] == queue
    assert "unsupported event type 'prelabel.replica.started.v9'" in bad["reason"]
    assert bad["deaths"] == 1
    assert bad["dead_lettered_at"] is not None
    assert bad["body"]["data"]["api_key"] == "***"
    assert bad["body"]["data"]["nested"] == {"password": "***", "s3_key": "uploads/a.png"}
    assert {letter["body"]["data"]["replica_id"] for letter in theirs} == {
        "b-poison-1",
        "b-poison-2",
    }
    for key in (key_a, key_b):
        text = (await svc.http.get("/dead-letters", headers=svc.auth(key))).text
        assert "pk_do_not_show" not in text
        assert "hunter2" not in text
        assert "this is not json" not in text
    assert svc.project_id not in json.dumps(theirs)
    assert project_b not in json.dumps(mine)

    # Listing left everything in place.
    assert (await listing(svc, key_a))["scanned"] == 5

    # A replays its fixed start by id: consumed and metered; B's ids are not A's to touch.
    answer = await replay(svc, key_a, {"ids": [fixed.id, theirs[0]["id"], "no-such-id"]})
    assert (answer["replayed"], answer["not_found"], answer["failed"]) == (1, 2, 0)
    assert set(answer["not_found_ids"]) == {theirs[0]["id"], "no-such-id"}

    async def metered() -> list[Any]:
        replicas: list[Any] = await svc.get("/usage/replicas")
        return [r for r in replicas if r["replica_id"] == "r-fixed"]

    (replica,) = await wait_until(metered, message="the replayed start metered")
    assert replica["running"] is True
    assert [letter["id"] for letter in (await listing(svc, key_a))["letters"]] == [bad["id"]]
    assert len((await listing(svc, key_b))["letters"]) == 2

    # B replays all of its own in the queue (by its handler's name): poison again, so back
    # in the dead-letter queue with their reason; A's is untouched.
    answer = await replay(svc, key_b, {"all": True, "queue": HANDLER})
    assert (answer["replayed"], answer["not_found"], answer["failed"]) == (2, 0, 0)
    again = await wait_for_letters(svc, key_b, 2)
    assert {letter["body"]["data"]["replica_id"] for letter in again} == {
        "b-poison-1",
        "b-poison-2",
    }
    assert all("unsupported event type" in letter["reason"] for letter in again)
    # Dead-lettered again, each still says it was replayed once.
    assert [letter["replays"] for letter in again] == [1, 1]
    assert [letter["id"] for letter in (await listing(svc, key_a))["letters"]] == [bad["id"]]

    metrics = (await svc.http.get("/metrics")).text
    assert f'prelabel_billing_dead_letters{{queue="{queue}"}} 4.0' in metrics
    replayed = [
        line
        for line in metrics.splitlines()
        if line.startswith(f'prelabel_billing_dead_letters_replayed_total{{queue="{queue}"}}')
    ]
    assert replayed
    assert float(replayed[0].split()[-1]) >= 3


async def test_scans_are_bounded_and_limits_refused(
    billing_service: BillingService,
) -> None:
    svc = billing_service
    for index in range(4):
        await publish(svc, poison(svc.project_id, f"p{index}"))
    await wait_for_letters(svc, svc.api_key, 4)

    box = svc.runtime.dead_letters
    assert box is not None
    box.scan_limit = 3
    try:
        page = await listing(svc, svc.api_key)
        assert (len(page["letters"]), page["scanned"], page["truncated"]) == (3, 3, True)
        assert page["scan_limit"] == 3
        answer = await replay(svc, svc.api_key, {"all": True})
        assert (answer["scanned"], answer["truncated"]) == (3, True)
    finally:
        box.scan_limit = 1000
    page = await listing(svc, svc.api_key, limit=2)
    assert (len(page["letters"]), page["truncated"]) == (2, True)

    refused: list[httpx.Response] = [
        await svc.http.get("/dead-letters", params={"limit": 10**6}, headers=svc.auth()),
        await svc.http.get("/dead-letters", params={"limit": 0}, headers=svc.auth()),
        await svc.http.post("/dead-letters/replay", json={}, headers=svc.auth()),
        await svc.http.post("/dead-letters/replay", json={"ids": []}, headers=svc.auth()),
        await svc.http.post(
            "/dead-letters/replay", json={"ids": ["x"], "all": True}, headers=svc.auth()
        ),
    ]
    assert [r.status_code for r in refused] == [422] * 5
    unknown = await svc.http.get("/dead-letters", params={"queue": "nope"}, headers=svc.auth())
    assert unknown.status_code == 404
    assert HANDLER in unknown.json()["detail"]
    assert (await svc.http.get("/dead-letters")).status_code == 401


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("api_key", True),
        ("s3_secret_key", True),
        ("password", True),
        ("access_token", True),
        ("Authorization", True),
        ("key", True),
        ("s3_key", False),
        ("routing_key", False),
        ("name", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_redaction_death_and_replay_headers() -> None:
    assert redact({"a": [{"token": "t", "x": 1}], "api_key": None}) == {
        "a": [{"token": "***", "x": 1}],
        "api_key": None,
    }
    at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    death = death_of({"x-death": [{"count": 5, "reason": "delivery_limit", "time": at}]}, None)
    assert (death.deaths, death.dead_lettered_at) == (5, at)
    assert death.reason is not None
    assert "delivery_limit" in death.reason
    headers = replay_headers(
        {"x-death": [], DEAD_LETTER_REASON_HEADER: "r", RETRIES_HEADER: 11, "trace": "t"}
    )
    assert headers == {"trace": "t", "x-prelabel-replays": 1}
    assert replay_headers(headers)["x-prelabel-replays"] == 2


@pytest.mark.parametrize(
    "module",
    [
        "dataset_service",
        "trigger_router_service",
        "model_serving_service",
        "annotation_service",
        "billing_service",
    ],
)
def test_every_service_serves_the_dead_letter_routes(module: str) -> None:
    import importlib

    from fastapi import FastAPI

    app = FastAPI()
    app.include_router(importlib.import_module(f"{module}.api").router)
    paths = app.openapi()["paths"]
    assert set(paths["/dead-letters"]) == {"get"}
    assert set(paths["/dead-letters/replay"]) == {"post"}


async def test_model_serving_lists_and_replays_its_services_predict_requests(
    ms: ModelServingService,
) -> None:
    """The dead letters of a model service's work queue (``predict.<service_id>``) are its
    project's: listed by the service id, replayed onto the work queue; another project
    cannot name that queue, and ``/metrics`` names no service."""
    model = await register_color_model(ms)
    service = await ms.deploy(model["id"])
    queue = ms.topology.predict_queue(service["id"])
    item = await ms.put_item(b"words", "text/plain", name="a.txt")
    request = make_event(
        PredictRequest(
            execution_id="exe_dead", service_id=service["id"], project_id=ms.project_id, item=item
        ),
        source="/services/trigger-router",
    )
    await publish_raw(
        ms.settings.amqp,
        ms.topology.dead_letter_exchange(MODEL_SERVING),
        ms.topology.dead_letter_queue(queue),
        request.to_json_bytes(),
        exchange_type="direct",
        headers={DEAD_LETTER_REASON_HEADER: "gave up after 11 delayed retries: Triton is down"},
    )

    async def listed() -> list[dict[str, Any]]:
        response = await ms.http.get(
            "/dead-letters", params={"queue": service["id"]}, headers=ms.auth()
        )
        assert response.status_code == 200, response.text
        letters: list[dict[str, Any]] = response.json()["letters"]
        return letters

    (letter,) = await wait_until(listed, message="the predict request listed")
    assert (letter["id"], letter["queue"]) == (request.id, queue)
    assert letter["reason"].endswith("Triton is down")
    _, other_key = await ms.auth_service.new_project()
    other = await ms.http.get(
        "/dead-letters", params={"queue": service["id"]}, headers=ms.auth(other_key)
    )
    assert other.status_code == 404
    everything = await ms.http.get("/dead-letters", headers=ms.auth(other_key))
    assert everything.json()["letters"] == []

    replayed = await ms.http.post(
        "/dead-letters/replay", json={"ids": [request.id]}, headers=ms.auth()
    )
    assert replayed.json()["replayed"] == 1

    async def queued() -> bool:
        messages: int = (await ms.service(service["id"]))["queue"]["messages"]
        return messages == 1

    await wait_until(queued, message="the request back on the service's work queue")
    assert await listed() == []
    metrics = (await ms.http.get("/metrics")).text
    assert 'prelabel_model_serving_dead_letters_replayed_total{queue="predict"}' in metrics
    assert service["id"] not in metrics
