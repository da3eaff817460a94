"""Pure rules of the trigger-router: specs, matching, load and scaling decisions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from common.dql import Condition
from trigger_router_service.adapters.scalers import worker_env
from trigger_router_service.domain.errors import RouterError
from trigger_router_service.domain.executions import ExecutionStatus, initial_status
from trigger_router_service.domain.scaling import (
    QueueStats,
    ScalingInput,
    ScalingPolicy,
    decide,
    deployment_name,
    estimate_load,
    replicas_for_load,
)
from trigger_router_service.domain.services import is_newer
from trigger_router_service.domain.triggers import (
    Action,
    ActiveTrigger,
    ExecutionMode,
    TriggerSpec,
    compile_filter,
    matching_triggers,
    validate_spec,
)

# --------------------------------------------------------------------------- specs


def _spec(**overrides: Any) -> TriggerSpec:
    fields: dict[str, Any] = {"operation": {"type": "predict", "service_id": "svc_1"}}
    fields.update(overrides)
    return TriggerSpec(**fields)


def test_spec_defaults_to_once_on_created_and_dedups_actions() -> None:
    spec = _spec(actions=["Created", "Created", "MetadataUpdated"])
    assert spec.actions == [Action.CREATED, Action.METADATA_UPDATED]
    assert _spec().execution_mode is ExecutionMode.ONCE
    assert _spec().actions == [Action.CREATED]


def test_invalid_filter_is_reported_with_its_path() -> None:
    with pytest.raises(RouterError) as err:
        validate_spec(_spec(filter={"$and": [{"metadata.user.x": {"$gt": {"a": 1}}}]}))
    assert err.value.message.startswith("invalid filter at /$and/0/metadata.user.x/$gt:")


def test_filter_depth_is_limited() -> None:
    deep: dict[str, Any] = {"name": "a"}
    for _ in range(5):
        deep = {"$and": [deep]}
    validate_spec(_spec(filter=deep), max_depth=10)
    with pytest.raises(RouterError):
        validate_spec(_spec(filter=deep), max_depth=3)


def test_unknown_operation_fields_are_rejected() -> None:
    with pytest.raises(ValueError, match="extra"):
        _spec(operation={"type": "predict", "service_id": "s", "extra": 1})


# --------------------------------------------------------------------------- matching


def _trigger(
    tid: str = "t1",
    *,
    project: str = "p1",
    actions: tuple[Action, ...] = (Action.CREATED,),
    filter: dict[str, Any] | None = None,
) -> ActiveTrigger:
    return ActiveTrigger(
        id=tid,
        project_id=project,
        service_id="svc_1",
        actions=frozenset(actions),
        mode=ExecutionMode.ALWAYS,
        filter=compile_filter(filter or {}),
    )


def _item(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": "i1",
        "project_id": "p1",
        "dataset_id": "d1",
        "name": "a.png",
        "filename": "/batch1/a.png",
        "dir": "/batch1",
        "type": "file",
        "hidden": False,
        "created_at": datetime(2024, 1, 1, tzinfo=UTC).isoformat(),
        "updated_at": datetime(2024, 1, 1, tzinfo=UTC).isoformat(),
        "metadata": {"system": {"mimetype": "image/png"}, "user": {"score": 0.7}},
    }
    item.update(overrides)
    return item


def test_only_triggers_of_the_items_project_and_action_fire() -> None:
    triggers = [
        _trigger("same"),
        _trigger("other-project", project="p2"),
        _trigger("other-action", actions=(Action.DELETED,)),
        _trigger("both", actions=(Action.CREATED, Action.METADATA_UPDATED)),
    ]
    fired = matching_triggers(triggers, Action.CREATED, _item())
    assert [t.id for t in fired] == ["same", "both"]
    fired = matching_triggers(triggers, Action.METADATA_UPDATED, _item())
    assert [t.id for t in fired] == ["both"]


def test_filters_use_dql_with_dataloop_defaults() -> None:
    images = _trigger(filter={"metadata.system.mimetype": "image/*", "dir": "/batch1/**"})
    scored = _trigger(filter={"metadata.user.score": {"$gte": 0.5}})
    assert matching_triggers([images, scored], Action.CREATED, _item()) == [images, scored]
    assert matching_triggers([images], Action.CREATED, _item(dir="/batch10")) == []
    # Hidden items and directories are skipped unless the filter asks for them.
    assert matching_triggers([images], Action.CREATED, _item(hidden=True)) == []
    assert matching_triggers([_trigger()], Action.CREATED, _item(type="dir")) == []
    wants_hidden = _trigger(filter={"hidden": True})
    assert matching_triggers([wants_hidden], Action.CREATED, _item(hidden=True)) == [wants_hidden]


def test_type_mismatch_is_no_match_and_is_reported() -> None:
    trigger = _trigger(filter={"metadata.user.score": {"$gt": 0.5}})
    seen: list[tuple[str, Any]] = []

    def hook(t: ActiveTrigger, cond: Condition, value: Any) -> None:
        seen.append((t.id, value))

    item = _item(metadata={"user": {"score": "high"}})
    assert matching_triggers([trigger], Action.CREATED, item, on_mismatch=hook) == []
    assert seen == [("t1", "high")]


# --------------------------------------------------------------------------- executions


def test_new_executions_wait_while_the_budget_is_exhausted() -> None:
    assert initial_status(False) is ExecutionStatus.QUEUED
    assert initial_status(True) is ExecutionStatus.WAITING_FOR_BUDGET


def test_last_writer_by_event_time() -> None:
    t1 = datetime(2024, 1, 1, tzinfo=UTC)
    t2 = datetime(2024, 1, 2, tzinfo=UTC)
    assert is_newer(t1, None)
    assert is_newer(t2, t1)
    assert is_newer(t1, t1)
    assert not is_newer(t1, t2)


# --------------------------------------------------------------------------- load


@pytest.mark.parametrize(
    ("ready", "consumers", "outstanding", "concurrency", "load"),
    [
        (0, 0, 0, 4, 0),
        (7, 0, 7, 4, 7),  # nobody consumes: all of it is ready
        (3, 1, 7, 4, 7),  # 4 held by the one replica
        (3, 1, 30, 4, 7),  # the ledger lags behind: unacked is at most the prefetch
        (0, 2, 5, 4, 5),
        (10, 1, 2, 4, 10),  # published by someone else: the queue knows more
        (0, 0, 5, 4, 0),  # outstanding but no consumers and nothing ready: nothing held
    ],
)
def test_load_is_ready_plus_unacked(
    ready: int, consumers: int, outstanding: int, concurrency: int, load: int
) -> None:
    assert estimate_load(QueueStats(ready, consumers, outstanding), concurrency) == load


@pytest.mark.parametrize(
    ("load", "minimum", "maximum", "per", "replicas"),
    [(0, 0, 3, 10, 0), (1, 0, 3, 10, 1), (10, 0, 3, 10, 1), (11, 0, 3, 10, 2), (95, 0, 3, 10, 3),
     (0, 2, 3, 10, 2), (5, 0, 0, 10, 0)],
)  # fmt: skip
def test_replicas_for_load_is_clamped_ceiling(
    load: int, minimum: int, maximum: int, per: int, replicas: int
) -> None:
    policy = ScalingPolicy(min_replicas=minimum, max_replicas=maximum, queue_per_replica=per)
    assert replicas_for_load(load, policy) == replicas


# --------------------------------------------------------------------------- decisions

POLICY = ScalingPolicy(min_replicas=0, max_replicas=3, queue_per_replica=10, cooldown_seconds=60)


def _decide(**overrides: Any) -> tuple[int, str | None]:
    fields: dict[str, Any] = {
        "policy": POLICY,
        "current": 0,
        "load": 0,
        "now": 1000.0,
        "last_active": None,
    }
    fields.update(overrides)
    decision = decide(ScalingInput(**fields))
    return decision.desired, decision.reason


def test_wakes_from_zero_when_work_is_routed_before_the_queue_shows_it() -> None:
    assert _decide(woken=True) == (1, "work-arrived")
    assert _decide(load=3) == (1, "queue-depth")
    assert _decide() == (0, None)


def test_scales_up_at_once_to_the_clamped_target() -> None:
    assert _decide(current=1, load=25, last_active=999.0) == (3, "queue-depth")
    assert _decide(current=1, load=500, last_active=999.0) == (3, "queue-depth")
    assert _decide(current=3, load=500, last_active=999.0) == (3, None)


def test_scales_down_only_after_the_cooldown_without_load() -> None:
    # Load dropped but is not zero: replicas still hold work, keep them.
    assert _decide(current=3, load=2, last_active=999.0) == (3, None)
    # No load, but the cooldown has not passed since the last activity.
    assert _decide(current=3, load=0, last_active=1000.0 - 59.0) == (3, None)
    # Cooldown over: straight to min_replicas.
    assert _decide(current=3, load=0, last_active=1000.0 - 60.0) == (0, "cooldown")
    floor = ScalingPolicy(min_replicas=1, max_replicas=3, cooldown_seconds=60)
    assert _decide(policy=floor, current=3, last_active=0.0) == (1, "cooldown")
    assert _decide(policy=floor, current=0) == (1, "min-replicas")


def test_exhausted_budget_never_scales_up_and_drops_the_floor() -> None:
    assert _decide(woken=True, budget_exhausted=True) == (0, None)
    assert _decide(current=1, load=50, last_active=999.0, budget_exhausted=True) == (1, None)
    floor = ScalingPolicy(min_replicas=2, max_replicas=3, cooldown_seconds=60)
    assert _decide(policy=floor, current=0, budget_exhausted=True) == (0, None)
    assert _decide(policy=floor, current=2, last_active=0.0, budget_exhausted=True) == (
        0,
        "budget-exhausted",
    )


def test_services_not_ready_run_no_replicas() -> None:
    assert _decide(current=2, load=40, deployed=False) == (0, "not-deployed")
    assert _decide(current=0, load=40, woken=True, deployed=False) == (0, None)


def test_activity_is_reported_for_the_cooldown_clock() -> None:
    assert decide(ScalingInput(POLICY, 0, 0, 1.0, None, woken=True)).active
    assert decide(ScalingInput(POLICY, 1, 4, 1.0, None)).active
    assert not decide(ScalingInput(POLICY, 1, 0, 1.0, None)).active


# --------------------------------------------------------------------------- backends


def test_deployment_names_are_dns_safe() -> None:
    pattern = "model-serving-worker-{service_id}"
    assert deployment_name(pattern, "svc_01H8ABC") == "model-serving-worker-svc-01h8abc"
    assert deployment_name("predict-{service_id}", "svc_x") == "predict-svc-x"


def test_worker_env_passes_model_serving_settings_but_not_other_services() -> None:
    base = {
        "PATH": "/bin",
        "MODEL_SERVING_AMQP_URL": "amqp://x",
        "MODEL_SERVING_TRITON_GRPC_URL": "t:8001",
        "TRIGGER_ROUTER_DATABASE_URL": "postgresql://router",
        "BILLING_AMQP_URL": "amqp://billing",
    }
    env = worker_env(base, {"MODEL_SERVING_TRITON_GRPC_URL": "override:8001"}, "svc_1", "rep_1")
    assert env == {
        "PATH": "/bin",
        "MODEL_SERVING_AMQP_URL": "amqp://x",
        "MODEL_SERVING_TRITON_GRPC_URL": "override:8001",
        "MODEL_SERVING_WORKER_SERVICE_ID": "svc_1",
        "MODEL_SERVING_WORKER_REPLICA_ID": "rep_1",
    }
