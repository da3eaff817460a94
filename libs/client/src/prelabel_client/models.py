"""What the five services answer and take, as the client reads them.

Defined here, not imported from the services, so the SDK installs alone. Answers
ignore fields they do not know (a newer service may add some); requests are
checked before they are sent.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.contracts import ItemSnapshot

Item = ItemSnapshot
"""An item; the same model the item events carry."""

ExecutionStatus = Literal[
    "created", "queued", "in-progress", "success", "failed", "waiting-for-budget", "cancelled"
]
EXECUTION_STATUSES: tuple[ExecutionStatus, ...] = (
    "created",
    "queued",
    "in-progress",
    "success",
    "failed",
    "waiting-for-budget",
    "cancelled",
)
FINAL_STATUSES: frozenset[str] = frozenset({"success", "failed", "cancelled"})
TaskItemStatus = Literal["pending-review", "approved", "corrected", "discarded"]
ReviewAction = Literal["approve", "correct", "discard"]
Action = Literal["Created", "Updated", "MetadataUpdated", "Deleted"]
ExportFormat = Literal["coco", "jsonl"]


class Answer(BaseModel):
    """Base of every answer model: immutable, unknown fields ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Request(BaseModel):
    """Base of every request body: unknown fields refused (a typo is an error)."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- dataset


class Project(Answer):
    """A project (admin key)."""

    id: str
    name: str
    created_at: datetime


class ApiKey(Answer):
    """A project API key; ``key`` is only in the answer that created it."""

    id: str
    project_id: str
    name: str
    created_at: datetime
    key: str | None = None


class Dataset(Answer):
    """A dataset of the caller's project."""

    id: str
    project_id: str
    name: str
    description: str = ""
    created_at: datetime
    item_count: int = 0


class ItemPage(Answer):
    """One page of a DQL query."""

    items: list[Item]
    total_count: int
    page: int
    page_size: int
    has_next: bool
    next_cursor: str | None = None
    """Where the next page starts (``items.seek``); ``None`` when none follows."""
    prev_cursor: str | None = None
    """Where the previous page ends; ``None`` on the first page."""


class Directory(Answer):
    """A subdirectory of a dataset and the (visible) items in it and below it."""

    dir: str
    name: str
    item_count: int
    has_children: bool


class DirectoryListing(Answer):
    """A directory's subdirectories with their item counts."""

    dataset_id: str
    parent: str
    item_count: int
    """Items in ``parent`` and below it."""
    direct_count: int
    """Items in ``parent`` itself."""
    children: list[Directory]
    truncated: bool
    """More subdirectories exist than the service lists at once."""


class Thumbnail(Answer):
    """An item's thumbnail (WebP), or ``not_modified`` when the ETag given is current."""

    content: bytes
    """The image; empty when ``not_modified``."""
    content_type: str | None
    etag: str | None
    cache_control: str | None
    not_modified: bool = False


# --------------------------------------------------------------------------- model-serving


class CatalogEntry(Answer):
    """A built-in model a project can install."""

    name: str
    version: str
    description: str
    input_type: str
    adapter: str
    labels: list[str]
    max_batch_size: int
    confidence_threshold: float
    timeout_seconds: float


class Model(Answer):
    """A model of the project (installed from the catalog or brought by the user)."""

    id: str
    name: str
    version: str
    source: str
    catalog_name: str | None = None
    triton_name: str
    spec: dict[str, Any]
    created_at: datetime


class InstallOptions(Request):
    """Options of a catalog install (all optional)."""

    name: str | None = None
    label_map: dict[str, str] | None = None
    confidence_threshold: float | None = None
    max_batch_size: int | None = None
    timeout_seconds: float | None = None


class Scaling(Request):
    """Scaling settings of a model service; unset fields keep their value."""

    min_replicas: int | None = Field(default=None, ge=0)
    max_replicas: int | None = Field(default=None, ge=0)
    queue_per_replica: int | None = Field(default=None, ge=1)
    cooldown_seconds: float | None = Field(default=None, ge=0)
    concurrency: int | None = Field(default=None, ge=1)
    drain_seconds: float | None = Field(default=None, ge=0)
    instance_type: str | None = None


class Queue(Answer):
    """A model service's work queue right now."""

    name: str
    messages: int | None = None
    consumers: int | None = None
    dead_letters: int | None = None


class Replica(Answer):
    """A replica (predict worker) of a model service."""

    id: str
    state: str
    host: str | None = None
    pid: int | None = None
    started_at: datetime
    ready_at: datetime | None = None
    seen_at: datetime


class ModelService(Answer):
    """A model service as model-serving knows it (with queue and replicas when asked for
    one service)."""

    id: str
    name: str
    model_id: str
    status: str
    error: str | None = None
    min_replicas: int
    max_replicas: int
    queue_per_replica: int
    cooldown_seconds: float
    concurrency: int
    drain_seconds: float
    instance_type: str
    created_at: datetime
    updated_at: datetime
    queue: Queue | None = None
    replicas: list[Replica] | None = None


class ServiceScaling(Answer):
    """A model service as the trigger-router (its autoscaler) sees it."""

    service_id: str
    project_id: str
    model_id: str
    status: str
    min_replicas: int
    max_replicas: int
    queue_per_replica: int
    cooldown_seconds: float
    concurrency: int
    instance_type: str
    error: str | None = None
    desired_replicas: int
    actual_replicas: int
    running_replicas: int
    last_active_at: datetime | None = None


class DeadLetter(Answer):
    """A request of a service that went to its dead-letter queue."""

    reason: str | None = None
    execution_id: str | None = None
    item_id: str | None = None
    body: str


class PredictedAnnotation(Answer):
    """One annotation a model produced."""

    type: str
    label: str
    coordinates: Any = None
    confidence: float
    text: str | None = None


class PredictNow(Answer):
    """The answer of a synchronous prediction on one file."""

    model_id: str
    model_name: str
    model_version: str
    annotations: list[PredictedAnnotation]
    latency_ms: float


# --------------------------------------------------------------------------- trigger-router


class Operation(Request):
    """What a trigger runs."""

    type: Literal["predict"] = "predict"
    service_id: str


class TriggerSpec(Request):
    """When a trigger fires and what it runs (Dataloop's shape)."""

    resource: Literal["Item"] = "Item"
    actions: list[Action] = Field(default_factory=lambda: list[Action](["Created"]))
    execution_mode: Literal["Once", "Always"] = "Once"
    filter: dict[str, Any] = Field(default_factory=dict)
    operation: Operation


class Trigger(Answer):
    """A trigger of the project."""

    id: str
    project_id: str
    name: str
    active: bool
    status: str
    status_reason: str | None = None
    spec: TriggerSpec
    created_at: datetime
    updated_at: datetime


class Execution(Answer):
    """One item through one model service."""

    id: str
    project_id: str
    service_id: str
    trigger_id: str | None = None
    batch_id: str | None = None
    pipeline_id: str | None = None
    item_id: str
    dataset_id: str
    event_id: str | None = None
    action: str | None = None
    status: ExecutionStatus
    attempts: int
    cold_start: bool
    replica_id: str | None = None
    error: str | None = None
    created_at: datetime
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime


class ExecutionPage(Answer):
    """One page of executions, newest first."""

    items: list[Execution]
    total_count: int
    page: int
    page_size: int
    has_next: bool


class RerunResult(Answer):
    """Executions a bulk rerun started again."""

    rerun: int
    execution_ids: list[str]


class Batch(Answer):
    """The executions one predict request created, with counts per status."""

    id: str
    project_id: str
    service_id: str
    selection: dict[str, Any]
    item_count: int
    created_at: datetime
    force: bool = False
    """Whether items this model version already predicted were predicted again."""
    counts: dict[str, int]
    """Executions per status, and ``skipped``: items already predicted, left out."""
    finished: int
    """Final executions plus skipped items."""
    progress: float

    @property
    def done(self) -> bool:
        """Whether every execution is final."""
        return self.finished >= self.item_count

    @property
    def skipped(self) -> int:
        """Items this model version had already predicted, left out (not forced)."""
        return self.counts.get("skipped", 0)


# --------------------------------------------------------------------------- annotation


class ModelRef(Answer):
    """The model version behind an annotation or a task item."""

    name: str | None = None
    model_id: str | None = None
    version: str | None = None


class Annotation(Answer):
    """An annotation (from a model or a person), current version."""

    id: str
    project_id: str
    dataset_id: str
    item_id: str
    type: str
    label: str
    coordinates: Any = None
    confidence: float | None = None
    text: str | None = None
    source: str
    model: ModelRef | None = None
    execution_id: str | None = None
    service_id: str | None = None
    origin: dict[str, Any] | None = None
    """Which way made it: ``{"way": "pipeline" | "trigger" | "batch", ...}``."""
    original: dict[str, Any] | None = None
    modified: bool = False
    deleted: bool = False
    created_at: datetime
    created_by: str | None = None


class Task(Answer):
    """A labeling task on a dataset."""

    id: str
    project_id: str
    dataset_id: str
    pipeline_id: str | None = None
    name: str
    auto_add: bool = False
    auto_add_from_services: list[str] = Field(default_factory=list)
    created_at: datetime
    progress: TaskProgress | None = None


class TaskProgress(Answer):
    """A task's items per status and the fraction reviewed."""

    total: int
    counts: dict[str, int]
    reviewed: int
    done_fraction: float


class TaskItemFile(Answer):
    """The item behind a task item, as the annotation service knows it."""

    filename: str | None = None
    width: int | None = None
    height: int | None = None


class TaskItem(Answer):
    """An item of a task, with its current annotations when listed."""

    task_id: str
    item_id: str
    status: TaskItemStatus
    added_at: datetime
    added_by: str | None = None
    model: ModelRef | None = None
    execution_id: str | None = None
    reviewer: str | None = None
    reviewed_at: datetime | None = None
    item: TaskItemFile | None = None
    annotations: list[Annotation] = Field(default_factory=list)


class TaskItemPage(Answer):
    """One page of a task's items."""

    total: int
    items: list[TaskItem]
    limit: int
    offset: int


class Correction(Request):
    """One annotation edit submitted with a ``correct`` review."""

    op: Literal["create", "update", "delete"]
    annotation_id: str | None = None
    type: str | None = None
    label: str | None = None
    coordinates: Any = None
    text: str | None = None


class Acceptance(Answer):
    """Per model version: approved without change / reviewed."""

    model: ModelRef
    reviewed: int
    approved: int
    corrected: int
    discarded: int
    acceptance_rate: float | None = None


# --------------------------------------------------------------------------- billing


class Budget(Answer):
    """A project's automation budget as of now (``budget`` ``None``: unlimited)."""

    project_id: str
    budget: Decimal | None = None
    spent: Decimal
    remaining: Decimal | None = None
    exhausted: bool
    charged_at: datetime | None = None
    exhausted_at: datetime | None = None


class UsageRow(Answer):
    """Runtime, cost and predictions of one service on one UTC day."""

    service_id: str
    day: date
    runtime_seconds: Decimal
    cost: Decimal
    predictions: int


class UsageTotal(Answer):
    """Totals over the usage rows."""

    runtime_seconds: Decimal
    cost: Decimal
    predictions: int


class Usage(Answer):
    """A project's usage over a range of UTC days."""

    project_id: str
    since: date
    until: date
    rows: list[UsageRow]
    total: UsageTotal


class ReplicaUsage(Answer):
    """One replica's metered runtime within a range."""

    replica_id: str
    service_id: str
    instance_type: str
    rate: Decimal
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    running: bool
    runtime_seconds: Decimal
    cost: Decimal


class ModelVersion(Answer):
    """A model version as its predictions name it."""

    name: str
    model_id: str
    version: str


class ModelUsage(Answer):
    """What one model version of one model service cost, and what people accepted."""

    service_id: str | None = None
    model: ModelVersion | None = None
    """``None``: runtime of a service that never predicted."""
    runtime_seconds: Decimal
    cost: Decimal
    predictions: int
    reviewed: int
    accepted_unchanged: int
    auto_accepted: int
    acceptance_rate: float | None = None
    auto_accepted_share: float | None = None
    cost_per_accepted_label: Decimal | None = None
    """``cost / accepted_unchanged`` (``None`` when nothing was accepted unchanged)."""


class ModelUsageReport(Answer):
    """Figures per model version within a window (``start`` ``None``: ever)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    project_id: str
    start: datetime | None = Field(default=None, alias="from")
    end: datetime = Field(alias="to")
    models: list[ModelUsage]


class BurnRate(Answer):
    """What the project's running replicas cost right now."""

    project_id: str
    running_replicas: int
    per_second: Decimal
    per_hour: Decimal
    seconds_left: Decimal | None = None


Task.model_rebuild()


# --------------------------------------------------------------------------- pipelines


class Pipeline(Answer):
    """A pipeline (Dataset -> Predict -> Task nodes and edges) and its counts."""

    id: str
    project_id: str
    name: str
    version: int
    status: str
    definition: dict[str, Any]
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    """Per node: pipeline executions per node status."""
    executions: dict[str, int] = Field(default_factory=dict)
    """Pipeline executions per status."""
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    stopped_at: datetime | None = None


class PipelineExecution(Answer):
    """One item's way through a pipeline, node by node."""

    id: str
    pipeline_id: str
    project_id: str
    version: int
    item_id: str
    dataset_id: str
    status: str
    error: str | None = None
    failed_node: str | None = None
    nodes: list[dict[str, Any]] = Field(default_factory=list)
    created_at: datetime
    finished_at: datetime | None = None


class PipelineExecutionPage(Answer):
    """One page of pipeline executions, newest first."""

    items: list[PipelineExecution]
    total_count: int
    page: int
    page_size: int
    has_next: bool = False


class PipelineRun(Answer):
    """What a run request let into a pipeline."""

    run_id: str
    items: int
    entered: int


# --------------------------------------------------------------------------- dead letters


class QueuedDeadLetter(Answer):
    """One dead letter of the project in one of a service's queues (``GET /dead-letters``);
    its body's secret-named fields read ``"***"``."""

    id: str
    queue: str
    reason: str | None = None
    deaths: int = 1
    retries: int = 0
    dead_lettered_at: datetime | None = None
    event_type: str | None = None
    subject: str | None = None
    correlation_id: str | None = None
    replays: int = 0
    body: dict[str, Any] | None = None
    body_omitted: bool = False


class DeadLetterPage(Answer):
    """The project's dead letters of one service's queues, and how much was looked at."""

    letters: list[QueuedDeadLetter]
    queues: list[str]
    scanned: int
    scan_limit: int
    truncated: bool
    unattributed: int = 0


class ReplayResult(Answer):
    """What ``POST /dead-letters/replay`` put back on the queues."""

    replayed: int
    not_found: int
    not_found_ids: list[str] = Field(default_factory=list)
    failed: int = 0
    scanned: int
    scan_limit: int
    truncated: bool
