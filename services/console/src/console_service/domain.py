"""Pure logic of the pages: the filter box, shapes to draw, the pipeline form and graph.

No I/O here; routes call these and hand the results to templates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_FILTER_CHARS = 20_000


class FormError(ValueError):
    """Input a page refuses before asking a service; the message is shown inline."""


# --------------------------------------------------------------------------- filters


def parse_filter(text: str) -> dict[str, Any]:
    """The DQL filter typed in the filter box (empty: everything)."""
    text = text.strip()
    if not text:
        return {}
    if len(text) > MAX_FILTER_CHARS:
        raise FormError(f"the filter is longer than {MAX_FILTER_CHARS} characters")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormError(
            f"the filter is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    if not isinstance(value, dict):
        raise FormError('the filter must be a JSON object, e.g. {"metadata.user.label": "cat"}')
    return value


def with_directory(filter_: dict[str, Any], directory: str) -> dict[str, Any]:
    """``filter_`` restricted to a directory (a glob such as ``/batch1/**`` works too)."""
    directory = directory.strip()
    if not directory or directory == "/":
        return filter_
    condition = {"dir": directory}
    return {"$and": [filter_, condition]} if filter_ else condition


# --------------------------------------------------------------------------- drawing


@dataclass(frozen=True)
class Shape:
    """One annotation as the item page draws it over the image."""

    id: str
    kind: str
    """``box``, ``polygon``, ``point``, ``text`` (an OCR line) or ``classification``."""
    label: str
    text: str | None
    confidence: float | None
    model: str | None
    version: str | None
    x: float = 0.0
    y: float = 0.0
    width: float = 0.0
    height: float = 0.0
    points: str = ""
    """SVG ``points`` of a polygon (and of an OCR line given as a polygon)."""

    @property
    def drawn(self) -> bool:
        """Whether it has geometry (classifications and geometry-less text have none)."""
        return self.kind != "classification" and (
            self.width > 0 or self.height > 0 or bool(self.points)
        )

    @property
    def as_polygon(self) -> bool:
        """Whether it is drawn as an SVG polygon (else a rectangle or a point)."""
        return bool(self.points)


def _xy(value: Any) -> tuple[float, float] | None:
    if isinstance(value, list | tuple) and len(value) == 2:
        x, y = value
        if isinstance(x, int | float) and isinstance(y, int | float) and not isinstance(x, bool):
            return float(x), float(y)
    return None


def shape_of(annotation: Any) -> Shape:
    """A :class:`Shape` from an SDK ``Annotation`` (coordinates as the service stores them:
    a box ``[[x1, y1], [x2, y2]]``, a polygon ``[[x, y], ...]``, a point ``[x, y]``)."""
    model = annotation.model
    base = {
        "id": annotation.id,
        "kind": annotation.type,
        "label": annotation.label,
        "text": annotation.text,
        "confidence": annotation.confidence,
        "model": model.name if model else None,
        "version": model.version if model else None,
    }
    coordinates = annotation.coordinates
    if annotation.type == "point":
        point = _xy(coordinates)
        if point is not None:
            return Shape(**base, x=point[0], y=point[1])
        return Shape(**base)
    if annotation.type not in ("box", "polygon", "text") or not isinstance(coordinates, list):
        return Shape(**base)
    points = [p for p in (_xy(c) for c in coordinates) if p is not None]
    if annotation.type in ("box", "text") and len(points) == 2:
        (x1, y1), (x2, y2) = points
        return Shape(**base, x=min(x1, x2), y=min(y1, y2), width=abs(x2 - x1), height=abs(y2 - y1))
    if len(points) >= 3:
        return Shape(**base, points=" ".join(f"{x:g},{y:g}" for x, y in points))
    return Shape(**base)


def shapes_of(annotations: Iterable[Any]) -> list[Shape]:
    """Shapes of the annotations that are not deleted."""
    return [shape_of(a) for a in annotations if not getattr(a, "deleted", False)]


# --------------------------------------------------------------------------- pipelines


ACTIONS = ("Created", "Updated", "MetadataUpdated", "Deleted")


@dataclass(frozen=True)
class PipelineForm:
    """The create-pipeline form: dataset + trigger -> predict -> task, with an optional
    confidence edge (confident predictions auto-accepted, the others to review)."""

    name: str
    dataset_id: str
    service_id: str
    task_id: str
    actions: Sequence[str] = ("Created",)
    execution_mode: str = "Once"
    filter: dict[str, Any] = field(default_factory=dict)
    min_confidence: float | None = None

    def definition(self) -> dict[str, Any]:
        """The pipeline definition the trigger-router takes."""
        if not self.name.strip():
            raise FormError("the pipeline needs a name")
        for what, value in (
            ("dataset", self.dataset_id),
            ("model service", self.service_id),
            ("task", self.task_id),
        ):
            if not value:
                raise FormError(f"pick a {what}")
        actions = [a for a in self.actions if a in ACTIONS]
        if not actions:
            raise FormError("pick at least one trigger action")
        if self.execution_mode not in ("Once", "Always"):
            raise FormError("the execution mode is Once or Always")
        trigger: dict[str, Any] = {"actions": actions, "execution_mode": self.execution_mode}
        if self.filter:
            trigger["filter"] = self.filter
        nodes: list[dict[str, Any]] = [
            {
                "id": "dataset",
                "type": "dataset",
                "config": {"dataset_id": self.dataset_id, "trigger": trigger},
            },
            {"id": "predict", "type": "predict", "config": {"service_id": self.service_id}},
        ]
        edges: list[dict[str, Any]] = [{"src": "dataset", "tgt": "predict"}]
        if self.min_confidence is None:
            nodes.append({"id": "review", "type": "task", "config": {"task_id": self.task_id}})
            edges.append({"src": "predict", "tgt": "review"})
        else:
            if not 0.0 <= self.min_confidence <= 1.0:
                raise FormError("the confidence threshold is between 0 and 1")
            confident = {"prediction.min_confidence": {"$gte": self.min_confidence}}
            unsure = {
                "$or": [
                    {"prediction.min_confidence": {"$lt": self.min_confidence}},
                    {"prediction.count": 0},
                ]
            }
            nodes.append(
                {
                    "id": "accepted",
                    "type": "task",
                    "config": {"task_id": self.task_id, "auto_accept": True},
                }
            )
            nodes.append({"id": "review", "type": "task", "config": {"task_id": self.task_id}})
            edges.append({"src": "predict", "tgt": "accepted", "condition": confident})
            edges.append({"src": "predict", "tgt": "review", "condition": unsure})
        return {"name": self.name.strip(), "nodes": nodes, "edges": edges}


@dataclass(frozen=True)
class GraphNode:
    """A node of the pipeline drawing: where it sits and its counts."""

    id: str
    type: str
    x: int
    y: int
    counts: Mapping[str, int]


@dataclass(frozen=True)
class GraphEdge:
    """An edge of the pipeline drawing."""

    x1: int
    y1: int
    x2: int
    y2: int
    condition: bool


NODE_W, NODE_H, GAP_X, GAP_Y = 170, 70, 60, 30


def layout(
    definition: Mapping[str, Any], counts: Mapping[str, Mapping[str, int]]
) -> tuple[list[GraphNode], list[GraphEdge], int, int]:
    """Nodes in columns by their distance from the sources, edges between them; and the
    drawing's width and height."""
    nodes = [n for n in definition.get("nodes", []) if isinstance(n, Mapping)]
    edges = [e for e in definition.get("edges", []) if isinstance(e, Mapping)]
    ids = [str(n.get("id")) for n in nodes]
    depth = dict.fromkeys(ids, 0)
    for _ in ids:  # longest path, bounded by the node count (cycles cannot loop forever)
        for edge in edges:
            src, tgt = str(edge.get("src")), str(edge.get("tgt"))
            if src in depth and tgt in depth and depth[tgt] < depth[src] + 1 <= len(ids):
                depth[tgt] = depth[src] + 1
    rows: dict[int, int] = {}
    placed: dict[str, GraphNode] = {}
    for node, node_id in zip(nodes, ids, strict=True):
        column = depth[node_id]
        row = rows.get(column, 0)
        rows[column] = row + 1
        placed[node_id] = GraphNode(
            node_id,
            str(node.get("type")),
            10 + column * (NODE_W + GAP_X),
            10 + row * (NODE_H + GAP_Y),
            counts.get(node_id, {}),
        )
    lines = []
    for edge in edges:
        a, b = placed.get(str(edge.get("src"))), placed.get(str(edge.get("tgt")))
        if a and b:
            lines.append(
                GraphEdge(
                    a.x + NODE_W,
                    a.y + NODE_H // 2,
                    b.x,
                    b.y + NODE_H // 2,
                    bool(edge.get("condition")),
                )
            )
    width = 20 + (max(depth.values(), default=0) + 1) * (NODE_W + GAP_X)
    height = 20 + max(rows.values(), default=1) * (NODE_H + GAP_Y)
    return list(placed.values()), lines, width, height


# --------------------------------------------------------------------------- billing


@dataclass(frozen=True)
class Bar:
    """One service's cost on one day, as a stacked bar segment of the usage chart."""

    day: str
    service: str
    cost: float
    x: int
    y: int
    width: int
    height: int
    colour: int
    """Index into the chart's palette (one per service)."""


CHART_W, CHART_H, CHART_PAD = 720, 220, 30


def usage_chart(rows: Sequence[Any]) -> tuple[list[Bar], list[tuple[str, int]], float]:
    """Stacked bars of cost per UTC day and service; the day labels with their x; the
    highest day's total (the chart's scale)."""
    days = sorted({str(r.day) for r in rows})
    services = sorted({r.service_id for r in rows})
    totals = {d: sum(float(r.cost) for r in rows if str(r.day) == d) for d in days}
    top = max(totals.values(), default=0.0)
    if not days:
        return [], [], 0.0
    slot = (CHART_W - 2 * CHART_PAD) // len(days)
    width = max(4, min(60, int(slot * 0.7)))
    bars: list[Bar] = []
    labels: list[tuple[str, int]] = []
    for index, day in enumerate(days):
        x = CHART_PAD + index * slot + (slot - width) // 2
        labels.append((day[5:], x + width // 2))
        base = CHART_H - CHART_PAD
        for row in sorted((r for r in rows if str(r.day) == day), key=lambda r: r.service_id):
            cost = float(row.cost)
            height = round(cost / top * (CHART_H - 2 * CHART_PAD)) if top > 0 else 0
            base -= height
            bars.append(
                Bar(
                    day,
                    row.service_id,
                    cost,
                    x,
                    base,
                    width,
                    height,
                    services.index(row.service_id) % 6,
                )
            )
    return bars, labels, top


# --------------------------------------------------------------------------- review


def corrections_from_form(
    current: Mapping[str, Shape], fields: Sequence[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The annotation edits of a *correct* review, from the review form's fields.

    ``label:<id>`` and ``text:<id>`` change an annotation (only when different),
    ``delete:<id>`` removes it, each ``new_box`` (``x1,y1,x2,y2``, drawn on the image)
    adds a box labelled ``new_label``. Ids must be the item's annotations.
    """
    edits: dict[str, dict[str, Any]] = {}
    deleted: list[str] = []
    boxes: list[list[list[float]]] = []
    new_label = ""
    for name, value in fields:
        kind, _, annotation_id = name.partition(":")
        if kind in ("label", "text", "delete"):
            shape = current.get(annotation_id)
            if shape is None:
                raise FormError(f"{annotation_id!r} is not an annotation of this item")
            if kind == "delete":
                deleted.append(annotation_id)
            elif kind == "label" and value.strip() and value.strip() != shape.label:
                edits.setdefault(annotation_id, {})["label"] = value.strip()
            elif kind == "text" and value != (shape.text or ""):
                edits.setdefault(annotation_id, {})["text"] = value
        elif name == "new_box":
            try:
                x1, y1, x2, y2 = (float(part) for part in value.split(","))
            except ValueError as exc:
                raise FormError(f"a drawn box is four numbers x1,y1,x2,y2, not {value!r}") from exc
            boxes.append([[x1, y1], [x2, y2]])
        elif name == "new_label":
            new_label = value.strip()
    if boxes and not new_label:
        raise FormError("give the drawn boxes a label")
    corrections: list[dict[str, Any]] = [{"op": "delete", "annotation_id": a} for a in deleted]
    corrections += [
        {"op": "update", "annotation_id": a, **change}
        for a, change in edits.items()
        if a not in deleted
    ]
    corrections += [
        {"op": "create", "type": "box", "label": new_label, "coordinates": box} for box in boxes
    ]
    if not corrections:
        raise FormError("nothing was corrected: change a label or text, delete or draw a box")
    return corrections
