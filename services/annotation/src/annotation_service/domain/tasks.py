"""Labeling tasks: which predictions join a task, review outcomes, acceptance per model
version and progress."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from annotation_service.domain.errors import AnnotationError, NotFoundError
from common.contracts import AddTaskItem, PredictionCompleted

TaskItemStatus = Literal["pending-review", "approved", "corrected", "discarded"]
ReviewedStatus = Literal["approved", "corrected", "discarded"]
ReviewAction = Literal["approve", "correct", "discard"]

PENDING: TaskItemStatus = "pending-review"
APPROVED: ReviewedStatus = "approved"
STATUSES: tuple[TaskItemStatus, ...] = ("pending-review", "approved", "corrected", "discarded")
REVIEWED: tuple[ReviewedStatus, ...] = ("approved", "corrected", "discarded")
ENTRY_STATUSES: tuple[TaskItemStatus, ...] = (PENDING, APPROVED)
"""The statuses an item can have when it enters a task (``task_item.added.v1``)."""


def entry_status(auto_accept: bool) -> TaskItemStatus:
    """The status an item a pipeline adds starts in."""
    return APPROVED if auto_accept else PENDING


@dataclass(frozen=True)
class TaskRule:
    """Which predictions put their item into a task automatically."""

    task_id: str
    project_id: str
    dataset_id: str
    auto_add: bool = False
    auto_add_from_services: tuple[str, ...] = ()

    def accepts(self, prediction: PredictionCompleted) -> bool:
        """Whether ``prediction``'s item joins this task when the prediction lands."""
        if (prediction.project_id, prediction.dataset_id) != (self.project_id, self.dataset_id):
            return False
        return self.auto_add or prediction.service_id in self.auto_add_from_services


def review_outcome(
    action: ReviewAction, corrections: int, changed_since_added: bool
) -> ReviewedStatus:
    """The status a review gives an item.

    Approving an item whose annotations people already changed (through the
    annotation API since it entered the task) counts as ``corrected``: the
    acceptance rate measures model output accepted *without change*.
    """
    if action == "discard":
        return "discarded"
    if action == "correct":
        if corrections == 0 and not changed_since_added:
            raise AnnotationError("action 'correct' needs at least one correction")
        return "corrected"
    if corrections:
        raise AnnotationError("action 'approve' takes no corrections; use 'correct'")
    return "corrected" if changed_since_added else "approved"


@dataclass(frozen=True)
class ModelKey:
    """A model version, the unit acceptance is measured for."""

    name: str | None
    model_id: str | None
    version: str | None


@dataclass
class Acceptance:
    """Review outcomes of the items one model version pre-labelled."""

    model: ModelKey
    approved: int = 0
    corrected: int = 0
    discarded: int = 0
    auto_accepted: int = 0
    """Approved by a pipeline's confidence edge, not by a person (counted in ``approved``)."""

    @property
    def reviewed(self) -> int:
        """Items reviewed (any outcome)."""
        return self.approved + self.corrected + self.discarded

    @property
    def rate(self) -> float | None:
        """Approved without change / reviewed; ``None`` before any review."""
        return self.approved / self.reviewed if self.reviewed else None

    @property
    def auto_accepted_share(self) -> float | None:
        """Auto-accepted / reviewed; ``None`` before any review."""
        return self.auto_accepted / self.reviewed if self.reviewed else None


def acceptance_by_model(
    rows: Iterable[tuple[ModelKey, str, int]],
    auto_accepted: Iterable[tuple[ModelKey, int]] = (),
) -> list[Acceptance]:
    """Fold ``(model, status, count)`` rows into one :class:`Acceptance` per model version,
    with ``(model, count)`` of the approved items a pipeline auto-accepted.

    Pending items are ignored; the result is sorted by model name and version.
    """
    by_model: dict[ModelKey, Acceptance] = {}
    for model, status, count in rows:
        if status not in REVIEWED:
            continue
        acc = by_model.setdefault(model, Acceptance(model))
        setattr(acc, status, getattr(acc, status) + count)
    for model, count in auto_accepted:
        by_model.setdefault(model, Acceptance(model)).auto_accepted += count
    return sorted(
        by_model.values(),
        key=lambda a: (a.model.name or "", a.model.model_id or "", a.model.version or ""),
    )


def progress(counts: dict[str, int]) -> dict[str, Any]:
    """Counts per status, total and the fraction reviewed."""
    per_status = {status: counts.get(status, 0) for status in STATUSES}
    total = sum(per_status.values())
    reviewed = total - per_status[PENDING]
    return {
        "total": total,
        "counts": per_status,
        "reviewed": reviewed,
        "done_fraction": reviewed / total if total else 0.0,
    }


# --------------------------------------------------------------------------- pipelines


def pipeline_reviewer(pipeline_id: str) -> str:
    """Who reviewed an item a pipeline auto-accepted."""
    return f"pipeline:{pipeline_id}"


def check_command(
    command: AddTaskItem,
    task_project: str | None,
    task_dataset: str | None,
    item: tuple[str, str] | None,
) -> None:
    """Refuse an ``add_task_item.v1`` whose task is not the project's (or unknown), whose
    dataset is not the task's, or whose item this service knows in another dataset.

    ``task_project``/``task_dataset``: the task's, ``None`` when no such task exists;
    ``item``: the known item's (project, dataset), ``None`` when not known yet.
    """
    ids = {
        "project_id": command.project_id,
        "task_id": command.task_id,
        "dataset_id": command.dataset_id,
        "item_id": command.item_id,
        "pipeline_id": command.pipeline_id,
        "pipeline_execution_id": command.pipeline_execution_id,
        "node_id": command.node_id,
    }
    for name, value in ids.items():
        if "\x00" in value:
            raise AnnotationError(f"add_task_item.v1: {name} contains a NUL character")
    if task_project is None or task_project != command.project_id:
        raise NotFoundError(f"task {command.task_id!r} not found in project {command.project_id!r}")
    if task_dataset != command.dataset_id:
        raise AnnotationError(
            f"task {command.task_id!r} is on dataset {task_dataset!r}, not {command.dataset_id!r}"
        )
    if item is not None and item != (command.project_id, command.dataset_id):
        raise AnnotationError(
            f"item {command.item_id!r} is not in dataset {command.dataset_id!r} "
            f"of project {command.project_id!r}"
        )
