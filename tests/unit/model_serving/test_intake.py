"""The worker's intake settles each delivery of a batch on its own: poison and requests of
another service are dead-lettered, duplicates dropped, decided requests recorded before
they are acknowledged, undecided ones requeued until their last delivery."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from common.consumer import DUPLICATE, HANDLED, DeadLetter, Delivery, Retry
from common.contracts import ItemSnapshot, PredictedAnnotation, PredictRequest
from common.envelope import make_event
from common.topology import RETRIES_HEADER
from model_serving_service.domain.specs import parse_spec
from model_serving_service.repository import Repository
from model_serving_service.repository.models import Model
from model_serving_service.repository.outcomes import Outcome
from model_serving_service.worker.intake import Intake
from model_serving_service.worker.pipeline import (
    Completed,
    Failed,
    Pipeline,
    Request,
    Result,
    Transient,
)

SERVICE = "svc_1"
LIMIT = 3
RETRIES = 2
NOW = datetime.now(UTC)
MODEL = Model(
    id="mdl_1",
    project_id="prj",
    name="colors",
    version="1",
    source="byom",
    catalog_name=None,
    triton_name="mdl_1",
    spec=parse_spec(
        {
            "input": {"tensor": "IMAGE"},
            "adapter": {"type": "classification", "outputs": {"scores": "P"}},
            "labels": ["red", "green"],
        }
    ),
    created_at=NOW,
)


class FakeRepo:
    """Claims in memory; records what the intake writes."""

    def __init__(self, claimed: set[str], cancelled: set[str] | None = None) -> None:
        self.done = set(claimed)
        self.recorded: list[Outcome] = []
        self.cancelled = cancelled or set()
        self.started: list[Any] = []

    async def claimed(self, keys: Sequence[str]) -> set[str]:
        return {k for k in keys if k in self.done}

    async def begin(
        self, requests: Sequence[tuple[str, int]], started: Callable[[set[str]], Sequence[Any]]
    ) -> set[str]:
        found = {e for e, _ in requests if e in self.cancelled}
        self.started.extend(started(found))
        return found

    async def record_outcomes(self, outcomes: Sequence[Outcome]) -> set[str]:
        fresh = {o.key for o in outcomes} - self.done
        self.done |= fresh
        self.recorded.extend(outcomes)
        return fresh


class FakePipeline:
    """Answers a fixed result per execution id."""

    def __init__(self, results: dict[str, Result]) -> None:
        self.results = results
        self.seen: list[str] = []

    async def run(self, batch: list[Request], recheck: Any = None) -> dict[Request, Result]:
        self.seen.extend(r.request.execution_id for r in batch)
        return {r: self.results[r.request.execution_id] for r in batch}


def delivery(
    execution_id: str,
    *,
    service_id: str = SERVICE,
    count: int | None = None,
    retries: int | None = None,
) -> Delivery:
    item = ItemSnapshot(
        id=f"itm_{execution_id}",
        project_id="prj",
        dataset_id="ds",
        name="a.png",
        filename="/a.png",
        dir="/",
        created_at=NOW,
        updated_at=NOW,
        metadata={},
    )
    request = PredictRequest(
        execution_id=execution_id, service_id=service_id, project_id="prj", item=item
    )
    body = make_event(request, source="/services/trigger-router", subject=item.id).to_json_bytes()
    headers: dict[str, Any] = {} if count is None else {"x-delivery-count": count}
    if retries is not None:
        headers[RETRIES_HEADER] = retries
    return Delivery(body, headers, time.monotonic())


def intake(repo: FakeRepo, pipeline: FakePipeline) -> Intake:
    return Intake(
        service_id=SERVICE,
        replica_id="rep_1",
        model=MODEL,
        repo=cast(Repository, repo),
        pipeline=cast(Pipeline, pipeline),
        delivery_limit=LIMIT,
        retries_allowed=RETRIES,
    )


async def test_each_delivery_of_a_batch_is_settled_on_its_own() -> None:
    red = PredictedAnnotation(type="classification", label="red", confidence=0.9)
    repo = FakeRepo(claimed={"exe_dup#1"})
    pipeline = FakePipeline(
        {
            "exe_ok": Completed([red]),
            "exe_bad": Failed("cannot decode image", poison=True),
            "exe_wrong": Failed("item is text/plain, but the model takes images (image/*)"),
            "exe_away": Transient("Triton is unreachable"),
            "exe_last": Transient("Triton is unreachable"),
            "exe_retried": Transient("Triton is unreachable"),
            "exe_spent": Transient("Triton is unreachable"),
        }
    )
    batch = [
        Delivery(b"{not json", {}, time.monotonic()),
        delivery("exe_other", service_id="svc_2"),
        delivery("exe_dup"),
        delivery("exe_ok"),
        delivery("exe_bad"),
        delivery("exe_wrong"),
        delivery("exe_away", count=1),
        delivery("exe_last", count=LIMIT),
        delivery("exe_retried", retries=RETRIES - 1),
        delivery("exe_spent", retries=RETRIES),
    ]

    settled = await intake(repo, pipeline).handle(batch)

    assert isinstance(settled[0], DeadLetter)
    assert settled[0].reason.startswith("body is not JSON")
    assert settled[1] == DeadLetter("request for service svc_2 reached the queue of svc_1")
    assert settled[2:6] == [DUPLICATE, HANDLED, DeadLetter("cannot decode image"), HANDLED]
    assert settled[6] == Retry("Triton is unreachable")
    gave_up = f"Triton is unreachable (gave up after {LIMIT + 1} deliveries)"
    assert settled[7] == DeadLetter(gave_up)
    assert settled[8] == Retry("Triton is unreachable")
    spent = f"Triton is unreachable (gave up after {RETRIES} delayed retries)"
    assert settled[9] == DeadLetter(spent)
    assert "exe_dup" not in pipeline.seen
    outcomes = {o.key: o.event for o in repo.recorded}
    assert sorted(outcomes) == ["exe_bad#1", "exe_last#1", "exe_ok#1", "exe_spent#1", "exe_wrong#1"]
    assert outcomes["exe_ok#1"].type == "prelabel.prediction.completed.v1"
    assert outcomes["exe_ok#1"].data.annotations == [red]
    assert outcomes["exe_last#1"].data.reason == gave_up
    assert outcomes["exe_last#1"].data.retryable is True
    assert outcomes["exe_spent#1"].data.reason == spent
    assert outcomes["exe_spent#1"].data.retryable is True
    assert outcomes["exe_wrong#1"].data.retryable is False


async def test_a_batch_that_fails_is_requeued_but_keeps_its_dead_letters() -> None:
    class Broken(FakeRepo):
        async def claimed(self, keys: Sequence[str]) -> set[str]:
            raise ConnectionError("database restarting")

    settled = await intake(Broken(set()), FakePipeline({})).handle(
        [Delivery(b"{not json", {}, time.monotonic()), delivery("exe_ok")]
    )

    assert isinstance(settled[0], DeadLetter)
    assert settled[1] == Retry("batch failed")


async def test_requests_of_cancelled_executions_are_acked_unpredicted_and_not_started() -> None:
    red = PredictedAnnotation(type="classification", label="red", confidence=0.9)
    repo = FakeRepo(claimed=set(), cancelled={"exe_cancelled"})
    pipeline = FakePipeline({"exe_ok": Completed([red])})

    settled = await intake(repo, pipeline).handle([delivery("exe_cancelled"), delivery("exe_ok")])

    assert settled == [HANDLED, HANDLED]
    assert pipeline.seen == ["exe_ok"]
    assert [o.key for o in repo.recorded] == ["exe_ok#1"]
    [started] = repo.started
    assert started.type == "prelabel.prediction.started.v1"
    assert [e.execution_id for e in started.data.executions] == ["exe_ok"]
    assert started.data.replica_id == "rep_1"
