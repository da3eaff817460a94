"""The pure rules of pipelines: validation messages, the DAG, edges on the prediction, node
states and how an item advances."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from common.contracts import PredictedAnnotation
from common.dql import prediction_document
from trigger_router_service.domain.pipelines import (
    NodeStatus,
    PipelineDefinition,
    PipelineError,
    PipelineTrigger,
    RunStatus,
    advance,
    build_graph,
    can_move,
    enters,
    first_failed,
    input_type_problem,
    refused_items_filter,
    run_status,
    taken_edges,
)
from trigger_router_service.domain.triggers import Action

CONFIDENT = {"prediction.min_confidence": {"$gte": 0.9}}
UNSURE = {"$or": [{"prediction.min_confidence": {"$lt": 0.9}}, {"prediction.count": 0}]}


def definition(
    nodes: list[dict[str, Any]] | None = None, edges: list[dict[str, Any]] | None = None
) -> PipelineDefinition:
    return PipelineDefinition.model_validate(
        {
            "name": "p",
            "nodes": nodes
            if nodes is not None
            else [
                {"id": "ds", "type": "dataset", "config": {"dataset_id": "ds_1"}},
                {"id": "predict", "type": "predict", "config": {"service_id": "svc_1"}},
                {
                    "id": "done",
                    "type": "task",
                    "config": {"task_id": "tsk_1", "auto_accept": True},
                },
                {"id": "review", "type": "task", "config": {"task_id": "tsk_1"}},
            ],
            "edges": edges
            if edges is not None
            else [
                {"src": "ds", "tgt": "predict"},
                {"src": "predict", "tgt": "done", "condition": CONFIDENT},
                {"src": "predict", "tgt": "review", "condition": UNSURE},
            ],
        }
    )


def problem(**kwargs: Any) -> str:
    with pytest.raises(PipelineError) as caught:
        build_graph(definition(**kwargs))
    assert caught.value.status == 422
    return caught.value.message


DS = {"id": "ds", "type": "dataset", "config": {"dataset_id": "ds_1"}}
P = {"id": "p", "type": "predict", "config": {"service_id": "svc_1"}}
T = {"id": "t", "type": "task", "config": {"task_id": "tsk_1"}}


def test_a_valid_graph_is_ordered_from_its_dataset_node() -> None:
    graph = build_graph(definition())
    assert graph.order[0] == "ds"
    assert graph.order.index("predict") < graph.order.index("done")
    assert graph.dataset.config.trigger.actions == [Action.CREATED]


def test_validation_names_the_node_or_edge_at_fault() -> None:
    assert "exactly one dataset node (found none)" in problem(nodes=[P], edges=[])
    two = {**DS, "id": "ds2"}
    assert "found 'ds', 'ds2'" in problem(nodes=[DS, two], edges=[])
    assert "node 'p' is defined twice" in problem(nodes=[DS, P, P], edges=[])
    assert "edge 0 (ds -> nope): node 'nope' does not exist" in problem(
        nodes=[DS, P], edges=[{"src": "ds", "tgt": "nope"}]
    )
    assert "node 'p' links to itself" in problem(nodes=[DS, P], edges=[{"src": "p", "tgt": "p"}])
    assert "nothing may lead into dataset node 'ds'" in problem(
        nodes=[DS, P], edges=[{"src": "ds", "tgt": "p"}, {"src": "p", "tgt": "ds"}]
    )
    assert "node 't' is not reachable from dataset node 'ds'" in problem(
        nodes=[DS, P, T], edges=[{"src": "ds", "tgt": "p"}]
    )
    assert "a second edge between the same nodes" in problem(
        nodes=[DS, P], edges=[{"src": "ds", "tgt": "p"}, {"src": "ds", "tgt": "p"}]
    )


def test_a_cycle_is_refused_naming_its_nodes() -> None:
    message = problem(
        nodes=[DS, P, T],
        edges=[{"src": "ds", "tgt": "p"}, {"src": "p", "tgt": "t"}, {"src": "t", "tgt": "p"}],
    )
    assert "cycle through node(s) 'p', 't'" in message


def test_bad_conditions_and_filters_are_refused_with_where_they_are() -> None:
    message = problem(
        nodes=[DS, P],
        edges=[{"src": "ds", "tgt": "p", "condition": {"prediction.nope": 1}}],
    )
    assert message.startswith("edge 0 (ds -> p): invalid condition")
    assert "prediction.nope" in message
    bad_filter = {**DS, "config": {"dataset_id": "ds_1", "trigger": {"filter": {"$bad": 1}}}}
    assert problem(nodes=[bad_filter], edges=[]).startswith("dataset node 'ds': invalid filter")


def test_shape_errors_are_pydantic_errors() -> None:
    with pytest.raises(ValidationError, match=r"does not match 'dataset'|discriminator|tag"):
        definition(nodes=[{"id": "x", "type": "code", "config": {}}], edges=[])
    with pytest.raises(ValidationError, match="deleted item cannot enter"):
        definition(
            nodes=[{**DS, "config": {"dataset_id": "d", "trigger": {"actions": ["Deleted"]}}}],
            edges=[],
        )
    with pytest.raises(ValidationError, match=r"auto_accept|extra"):
        definition(nodes=[{**T, "config": {"task_id": "t", "auto": True}}], edges=[])


def test_an_item_enters_on_its_dataset_action_and_filter() -> None:
    graph = build_graph(
        definition(
            nodes=[
                {
                    **DS,
                    "config": {
                        "dataset_id": "ds_1",
                        "trigger": {"actions": ["Created"], "filter": {"dir": "/in/**"}},
                    },
                }
            ],
            edges=[],
        )
    )
    item = {"dataset_id": "ds_1", "dir": "/in/a", "type": "file", "hidden": False}
    assert enters(graph, Action.CREATED, item)
    assert not enters(graph, Action.UPDATED, item)
    assert not enters(graph, Action.CREATED, {**item, "dataset_id": "ds_2"})
    assert not enters(graph, Action.CREATED, {**item, "dir": "/out"})


def predicted(*confidences: float) -> list[PredictedAnnotation]:
    return [
        PredictedAnnotation(type="classification", label="7", confidence=c) for c in confidences
    ]


def test_confidence_edges_split_confident_from_unsure_predictions() -> None:
    graph = build_graph(definition())
    item: dict[str, Any] = {"metadata": {"user": {}}}
    assert [graph.definition.edges[i].tgt for i in taken_edges(graph, "ds", item)] == ["predict"]

    def targets(*confidences: float) -> list[str]:
        doc = prediction_document(item, predicted(*confidences))
        return [graph.definition.edges[i].tgt for i in taken_edges(graph, "predict", doc)]

    assert targets(0.95) == ["done"]
    assert targets(0.95, 0.5) == ["review"]
    assert targets() == ["review"]


def test_advance_starts_taken_nodes_and_skips_the_others() -> None:
    graph = build_graph(definition())
    pending = dict.fromkeys(["predict", "done", "review"], NodeStatus.PENDING)
    first = advance(graph, {"ds": NodeStatus.SUCCESS, **pending}, [0])
    assert first.start == ("predict",)
    assert first.skip == ()
    statuses = {"ds": NodeStatus.SUCCESS, **pending, "predict": NodeStatus.SUCCESS}
    second = advance(graph, statuses, [0, 1])
    assert second.start == ("done",)
    assert second.skip == ("review",)


def test_a_skipped_node_skips_its_children_and_a_failed_one_holds_them() -> None:
    graph = build_graph(
        definition(nodes=[DS, P, T], edges=[{"src": "ds", "tgt": "p"}, {"src": "p", "tgt": "t"}])
    )
    skipped = advance(graph, {"ds": NodeStatus.SUCCESS}, [])
    assert skipped.skip == ("p", "t")
    held = advance(graph, {"ds": NodeStatus.SUCCESS, "p": NodeStatus.FAILED}, [0, 1])
    assert held == type(held)((), ())


def test_run_status_and_where_a_rerun_starts() -> None:
    graph = build_graph(definition())
    running = {"ds": NodeStatus.SUCCESS, "predict": NodeStatus.RUNNING}
    assert run_status(running) is RunStatus.RUNNING
    failed = {**running, "predict": NodeStatus.FAILED, "done": NodeStatus.PENDING}
    assert run_status(failed) is RunStatus.FAILED
    assert first_failed(graph, failed) == "predict"
    done = {"ds": NodeStatus.SUCCESS, "predict": NodeStatus.SUCCESS, "done": NodeStatus.SKIPPED}
    assert run_status(done) is RunStatus.SUCCESS


def test_node_state_machine() -> None:
    assert can_move(NodeStatus.PENDING, NodeStatus.RUNNING)
    assert can_move(NodeStatus.RUNNING, NodeStatus.FAILED)
    assert can_move(NodeStatus.FAILED, NodeStatus.RUNNING)
    assert not can_move(NodeStatus.SUCCESS, NodeStatus.RUNNING)
    assert not can_move(NodeStatus.SKIPPED, NodeStatus.RUNNING)
    assert not can_move(NodeStatus.PENDING, NodeStatus.FAILED)


@pytest.mark.parametrize(
    ("input_type", "filter_", "refused"),
    [
        ("image", {}, False),
        ("image", {"metadata.system.mimetype": "image/*"}, False),
        ("image", {"metadata.system.mimetype": "image/png"}, False),
        ("image", {"metadata.system.mimetype": "text/plain"}, True),
        ("image", {"metadata.system.mimetype": {"$in": ["text/*", "application/json"]}}, True),
        ("image", {"metadata.system.mimetype": {"$in": ["text/*", "image/jpeg"]}}, False),
        ("image", {"$and": [{"dir": "/a"}, {"metadata.system.mimetype": "text/*"}]}, True),
        ("image", {"metadata.system.mimetype": "*/*"}, False),
        ("text", {"metadata.system.mimetype": {"$eq": "image/png"}}, True),
        ("text", {"metadata.system.mimetype": "application/json"}, False),
        ("prompt", {"metadata.system.mimetype": "image/png"}, False),
    ],
)
def test_a_trigger_pinning_mimetypes_the_model_refuses_is_named(
    input_type: str, filter_: dict[str, Any], refused: bool
) -> None:
    trigger = PipelineTrigger(filter=filter_)
    problem = input_type_problem("predict", input_type, trigger)
    assert (problem is not None) == refused
    if problem:
        assert problem.startswith("node 'predict': its model takes")


def test_refused_items_filter_selects_what_the_trigger_lets_in_and_the_model_refuses() -> None:
    trigger = PipelineTrigger(filter={"dir": "/a"})
    assert refused_items_filter("image", trigger) == {
        "$and": [
            {"dir": "/a"},
            {"metadata.system.mimetype": {"$exists": True}},
            {"metadata.system.mimetype": {"$nin": ["image/*"]}},
        ]
    }
    assert refused_items_filter("prompt", trigger) is None
