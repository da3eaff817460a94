"""Pipelines: a graph of nodes (dataset -> predict -> task ...) with DQL conditions on its
edges, and the pure rules of one item's way through it.

A pipeline execution records each node's status. The dataset node succeeds when the item
enters; a node that succeeds has its out-edges evaluated against the execution's document
(the item, plus ``prediction`` once a predict node ran); a node whose parents are all
decided runs when at least one edge into it was taken, and is skipped otherwise. The
execution fails when a node fails (the node is named), and succeeds when every node is
``success`` or ``skipped``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.dql import DQLError, Node, matches, parse_filter
from trigger_router_service.domain.errors import ConflictError, RouterError
from trigger_router_service.domain.triggers import Action, ExecutionMode, compile_filter

NODE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_NODES = 50
MAX_EDGES = 200


class PipelineError(RouterError):
    """A pipeline definition breaks a rule; the message names the node or edge."""

    status = 422


class NodeType(StrEnum):
    """What a node does."""

    DATASET = "dataset"
    PREDICT = "predict"
    TASK = "task"


class PipelineStatus(StrEnum):
    """``created -> running -> stopped`` (and back to ``running`` on a restart)."""

    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"


class NodeStatus(StrEnum):
    """One node's status within one pipeline execution."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"


class RunStatus(StrEnum):
    """A pipeline execution: ``running`` until every node is decided."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


NODE_TRANSITIONS: dict[NodeStatus, frozenset[NodeStatus]] = {
    NodeStatus.PENDING: frozenset({NodeStatus.RUNNING, NodeStatus.SKIPPED, NodeStatus.SUCCESS}),
    NodeStatus.RUNNING: frozenset({NodeStatus.SUCCESS, NodeStatus.FAILED}),
    # A rerun starts a failed node again; a late success of a retried attempt closes it.
    NodeStatus.FAILED: frozenset({NodeStatus.RUNNING, NodeStatus.SUCCESS}),
    NodeStatus.SUCCESS: frozenset(),
    NodeStatus.SKIPPED: frozenset(),
}
"""Where each node status may move."""

DECIDED = frozenset({NodeStatus.SUCCESS, NodeStatus.SKIPPED})
"""Node statuses after which nothing more happens at that node."""


def can_move(current: NodeStatus, target: NodeStatus) -> bool:
    """Whether a node may go from ``current`` to ``target``."""
    return target in NODE_TRANSITIONS[current]


# --------------------------------------------------------------------------- definition


class PipelineTrigger(BaseModel):
    """The dataset node's trigger: which item events let an item in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actions: list[Action] = Field(default_factory=lambda: [Action.CREATED], min_length=1)
    """Item events that let an item in (``Created``, ``Updated``, ``MetadataUpdated``)."""
    filter: dict[str, Any] = Field(default_factory=dict)
    """DQL filter the item must match (``{}``: every visible file)."""
    execution_mode: ExecutionMode = ExecutionMode.ONCE
    """``Once``: an item goes through at most once; ``Always``: on every matching event."""

    @field_validator("actions")
    @classmethod
    def _entering(cls, actions: list[Action]) -> list[Action]:
        if Action.DELETED in actions:
            raise ValueError(
                "a deleted item cannot enter a pipeline (actions: Created, Updated, MetadataUpdated)"
            )
        return list(dict.fromkeys(actions))


class DatasetConfig(BaseModel):
    """Where items come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset_id: str = Field(min_length=1, max_length=200)
    trigger: PipelineTrigger = Field(default_factory=PipelineTrigger)


class PredictConfig(BaseModel):
    """Which deployed model service predicts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service_id: str = Field(min_length=1, max_length=200)


class TaskConfig(BaseModel):
    """Which labeling task the item goes to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: str = Field(min_length=1, max_length=200)
    auto_accept: bool = False
    """Record the item as accepted without review (the confident path of a confidence edge)."""


class NodeBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=NODE_ID, description="Unique within the pipeline.")


class DatasetNode(NodeBase):
    type: Literal[NodeType.DATASET]
    config: DatasetConfig


class PredictNode(NodeBase):
    type: Literal[NodeType.PREDICT]
    config: PredictConfig


class TaskNode(NodeBase):
    type: Literal[NodeType.TASK]
    config: TaskConfig


PipelineNode = Annotated[DatasetNode | PredictNode | TaskNode, Field(discriminator="type")]
"""A node; more types (filter, update_metadata) join this union."""


class Edge(BaseModel):
    """A link from ``src`` to ``tgt``, taken when ``condition`` (DQL) matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    src: str = Field(min_length=1, max_length=64)
    tgt: str = Field(min_length=1, max_length=64)
    condition: dict[str, Any] | None = None
    """DQL over ``metadata.*``, the item's fields and ``prediction.*``; none: always taken."""


class PipelineDefinition(BaseModel):
    """What a user writes (the API's body and the YAML/JSON file form)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    nodes: list[PipelineNode] = Field(min_length=1, max_length=MAX_NODES)
    edges: list[Edge] = Field(default_factory=list, max_length=MAX_EDGES)


@dataclass(frozen=True)
class Graph:
    """A validated definition with its parsed filters, ready to run items through."""

    definition: PipelineDefinition
    dataset: DatasetNode
    trigger_filter: Node
    conditions: tuple[Node | None, ...]
    """Parsed condition of each edge, by edge index."""
    nodes: Mapping[str, DatasetNode | PredictNode | TaskNode] = field(default_factory=dict)
    order: tuple[str, ...] = ()
    """Node ids in a topological order (the dataset node first)."""

    def out_edges(self, node_id: str) -> list[int]:
        """Indexes of the edges leaving ``node_id``."""
        return [i for i, e in enumerate(self.definition.edges) if e.src == node_id]

    def in_edges(self, node_id: str) -> list[int]:
        """Indexes of the edges entering ``node_id``."""
        return [i for i, e in enumerate(self.definition.edges) if e.tgt == node_id]

    def of_type(self, kind: NodeType) -> list[str]:
        """Ids of the nodes of one type."""
        return [n.id for n in self.definition.nodes if n.type is kind]


def _parse_condition(condition: dict[str, Any], where: str, max_depth: int) -> Node:
    try:
        return parse_filter(condition, max_depth=max_depth, prediction=True)
    except DQLError as exc:
        at = f" at {exc.path}" if exc.path else ""
        raise PipelineError(f"{where}: invalid condition{at}: {exc.message}") from exc


def build_graph(definition: PipelineDefinition, *, max_depth: int = 10) -> Graph:
    """Validate a definition (one dataset node, unique ids, edges between existing nodes,
    no cycle, every node reachable, filters that parse) and build its graph. Raises
    :class:`PipelineError` naming the node or edge at fault."""
    nodes: dict[str, DatasetNode | PredictNode | TaskNode] = {}
    for node in definition.nodes:
        if node.id in nodes:
            raise PipelineError(f"node {node.id!r} is defined twice; node ids must be unique")
        nodes[node.id] = node
    datasets = [n for n in definition.nodes if isinstance(n, DatasetNode)]
    if len(datasets) != 1:
        found = ", ".join(repr(n.id) for n in datasets) or "none"
        raise PipelineError(f"a pipeline has exactly one dataset node (found {found})")
    [dataset] = datasets
    seen: set[tuple[str, str]] = set()
    conditions: list[Node | None] = []
    for index, edge in enumerate(definition.edges):
        where = f"edge {index} ({edge.src} -> {edge.tgt})"
        for end in (edge.src, edge.tgt):
            if end not in nodes:
                raise PipelineError(f"{where}: node {end!r} does not exist")
        if edge.src == edge.tgt:
            raise PipelineError(f"{where}: node {edge.src!r} links to itself")
        if edge.tgt == dataset.id:
            raise PipelineError(f"{where}: nothing may lead into dataset node {dataset.id!r}")
        if (edge.src, edge.tgt) in seen:
            raise PipelineError(f"{where}: a second edge between the same nodes")
        seen.add((edge.src, edge.tgt))
        conditions.append(
            None if edge.condition is None else _parse_condition(edge.condition, where, max_depth)
        )
    order = _topological(nodes, definition.edges)
    reachable = _reachable(dataset.id, definition.edges)
    for node in definition.nodes:
        if node.id not in reachable:
            raise PipelineError(
                f"node {node.id!r} is not reachable from dataset node {dataset.id!r}"
            )
    try:
        trigger_filter = compile_filter(dataset.config.trigger.filter, max_depth=max_depth)
    except RouterError as exc:
        raise PipelineError(f"dataset node {dataset.id!r}: {exc.message}") from exc
    return Graph(definition, dataset, trigger_filter, tuple(conditions), nodes, order)


def _topological(nodes: Mapping[str, object], edges: Sequence[Edge]) -> tuple[str, ...]:
    indegree = dict.fromkeys(nodes, 0)
    for edge in edges:
        indegree[edge.tgt] += 1
    ready = [n for n, d in indegree.items() if d == 0]
    order: list[str] = []
    while ready:
        current = ready.pop(0)
        order.append(current)
        for edge in edges:
            if edge.src == current:
                indegree[edge.tgt] -= 1
                if indegree[edge.tgt] == 0:
                    ready.append(edge.tgt)
    if len(order) < len(nodes):
        cyclic = sorted(n for n, d in indegree.items() if d > 0)
        raise PipelineError(
            "the graph has a cycle through node(s) " + ", ".join(repr(n) for n in cyclic)
        )
    return tuple(order)


def _reachable(start: str, edges: Sequence[Edge]) -> set[str]:
    found = {start}
    frontier = [start]
    while frontier:
        current = frontier.pop()
        for edge in edges:
            if edge.src == current and edge.tgt not in found:
                found.add(edge.tgt)
                frontier.append(edge.tgt)
    return found


def check_editable(status: PipelineStatus, action: str) -> None:
    """Updates (a new version) and deletes only while the pipeline takes no items."""
    if status is PipelineStatus.RUNNING:
        raise ConflictError(f"the pipeline is running; stop it before you {action} it")


# --------------------------------------------------------------------------- running


def enters(graph: Graph, action: Action, item: Mapping[str, Any]) -> bool:
    """Whether an item event lets the item into the pipeline's dataset node."""
    config = graph.dataset.config
    if item.get("dataset_id") != config.dataset_id or action not in config.trigger.actions:
        return False
    return matches(graph.trigger_filter, item)


def taken_edges(graph: Graph, node_id: str, document: Mapping[str, Any]) -> list[int]:
    """The out-edges of a node that succeeded whose condition matches ``document`` (a
    condition that cannot compare with the document's values does not match)."""
    taken: list[int] = []
    for index in graph.out_edges(node_id):
        condition = graph.conditions[index]
        if condition is None or matches(condition, document):
            taken.append(index)
    return taken


@dataclass(frozen=True)
class Advance:
    """What follows from the edges taken so far: nodes to start and nodes skipped."""

    start: tuple[str, ...]
    skip: tuple[str, ...]


def advance(graph: Graph, statuses: Mapping[str, NodeStatus], taken: Iterable[int]) -> Advance:
    """Decide every pending node whose parents are all decided: it starts when an edge
    into it was taken, else it is skipped (and so may its children be, in the same pass).
    A node below a failed or running parent stays pending."""
    current = dict(statuses)
    taken_set = set(taken)
    start: list[str] = []
    skip: list[str] = []
    for node_id in graph.order:
        if current.get(node_id, NodeStatus.PENDING) is not NodeStatus.PENDING:
            continue
        incoming = graph.in_edges(node_id)
        if not incoming:
            continue
        parents = [graph.definition.edges[i].src for i in incoming]
        if any(current.get(p, NodeStatus.PENDING) not in DECIDED for p in parents):
            continue
        via = [
            i
            for i in incoming
            if i in taken_set and current[graph.definition.edges[i].src] is NodeStatus.SUCCESS
        ]
        if via:
            current[node_id] = NodeStatus.RUNNING
            start.append(node_id)
        else:
            current[node_id] = NodeStatus.SKIPPED
            skip.append(node_id)
    return Advance(tuple(start), tuple(skip))


def run_status(statuses: Mapping[str, NodeStatus]) -> RunStatus:
    """A pipeline execution's status from its nodes'."""
    values = set(statuses.values())
    if NodeStatus.FAILED in values:
        return RunStatus.FAILED
    if values <= DECIDED:
        return RunStatus.SUCCESS
    return RunStatus.RUNNING


def first_failed(graph: Graph, statuses: Mapping[str, NodeStatus]) -> str | None:
    """The failed node earliest in the graph's order (where a rerun starts)."""
    for node_id in graph.order:
        if statuses.get(node_id) is NodeStatus.FAILED:
            return node_id
    return None


# --------------------------------------------------------------------------- views


class NodeRun(BaseModel):
    """One node of one pipeline execution."""

    node_id: str
    type: NodeType
    status: NodeStatus
    execution_id: str | None = None
    """The predict execution in the ledger (predict nodes)."""
    error: str | None = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None


class PipelineExecution(BaseModel):
    """One item's way through a pipeline."""

    id: str
    pipeline_id: str
    project_id: str
    version: int
    item_id: str
    dataset_id: str
    event_id: str | None
    status: RunStatus
    error: str | None = None
    failed_node: str | None = None
    """The node where it failed."""
    nodes: list[NodeRun]
    created_at: datetime
    finished_at: datetime | None = None


class Pipeline(BaseModel):
    """A pipeline as the API shows it."""

    id: str
    project_id: str
    name: str
    version: int
    status: PipelineStatus
    definition: PipelineDefinition
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    """Per node, per node status: how many pipeline executions (every status, zeros too)."""
    executions: dict[str, int] = Field(default_factory=dict)
    """Pipeline executions per status."""
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    stopped_at: datetime | None = None


MIMETYPE_FIELD = "metadata.system.mimetype"
ACCEPTED_MIMETYPES: dict[str, tuple[str, ...]] = {
    "image": ("image/*",),
    "text": ("text/*", "application/json", "application/xml"),
}
"""The item mimetypes (globs) a model of each input type takes: model-serving's rule
(its ``input_problem``), restated because the router never imports model-serving."""


def _fixed(pattern: str) -> str:
    """The part of a mimetype glob before its first wildcard (all of a literal)."""
    for n, char in enumerate(pattern):
        if char in "*?":
            return pattern[:n]
    return pattern


def _may_accept(input_type: str, mimetype: str) -> bool:
    """Whether some item whose mimetype matches ``mimetype`` (a literal or a glob) fits
    a model taking ``input_type``."""
    value = mimetype.lower()
    wild = _fixed(value) != value
    for accepted in ACCEPTED_MIMETYPES[input_type]:
        prefix = _fixed(accepted)
        exact = prefix == accepted
        if wild:
            if value.startswith(prefix) or (not exact and prefix.startswith(_fixed(value))):
                return True
        elif value == accepted if exact else value.startswith(prefix):
            return True
    return False


def pinned_mimetypes(filter_: Mapping[str, Any]) -> list[str] | None:
    """The mimetypes a trigger filter restricts items to (``$eq``/implicit/``$in`` on
    ``metadata.system.mimetype`` at the top or in an ``$and``); ``None``: not pinned."""
    parts: list[Mapping[str, Any]] = [filter_]
    parts += [p for p in filter_.get("$and", []) if isinstance(p, Mapping)]
    for part in parts:
        condition = part.get(MIMETYPE_FIELD)
        if isinstance(condition, str):
            return [condition]
        if isinstance(condition, Mapping):
            if isinstance(condition.get("$eq"), str):
                return [condition["$eq"]]
            values = condition.get("$in")
            if isinstance(values, list) and all(isinstance(v, str) for v in values):
                return list(values)
    return None


def input_type_problem(node_id: str, input_type: str, trigger: PipelineTrigger) -> str | None:
    """Why the dataset node's trigger lets in no item the predict node's model takes."""
    if input_type not in ACCEPTED_MIMETYPES:
        return None
    pinned = pinned_mimetypes(trigger.filter)
    if pinned is None or any(_may_accept(input_type, m) for m in pinned):
        return None
    return (
        f"node {node_id!r}: its model takes {input_type} items "
        f"({', '.join(ACCEPTED_MIMETYPES[input_type])}), but the dataset node's trigger only "
        f"lets in {', '.join(pinned)}"
    )


def refused_items_filter(input_type: str, trigger: PipelineTrigger) -> dict[str, Any] | None:
    """A DQL filter for the items the dataset node lets in that a model taking
    ``input_type`` refuses (``None``: the input type is not one the router knows)."""
    accepted = ACCEPTED_MIMETYPES.get(input_type)
    if accepted is None:
        return None
    return {
        "$and": [
            trigger.filter,
            {MIMETYPE_FIELD: {"$exists": True}},
            {MIMETYPE_FIELD: {"$nin": list(accepted)}},
        ]
    }
