"""Contracts published by the trigger-router."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.contracts.base import Contract
from common.contracts.dataset import ItemSnapshot
from common.topology import TRIGGER_ROUTER

Way = Literal["trigger", "batch", "pipeline"]
"""Which of the three ways to pre-label created an execution."""


class Origin(BaseModel):
    """Where an execution came from: a trigger on a model service, a batch (predict on a
    selection) or a pipeline's predict node. Carried by the predict request and echoed
    by its outcome, so annotations record which way produced them."""

    model_config = ConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)

    way: Way
    """``trigger``, ``batch`` or ``pipeline``."""
    id: str
    """The trigger, batch or pipeline id."""
    pipeline_execution_id: str | None = None
    """The pipeline execution (one item's way through the graph), for ``pipeline``."""
    node_id: str | None = None
    """The pipeline node that created the execution, for ``pipeline``."""


class PredictRequest(Contract):
    """Work for a model service: run its model on one item (one execution)."""

    routing_key = "predict_item.v1"
    producer = TRIGGER_ROUTER
    kind = "command"

    execution_id: str
    """The execution this request belongs to; predict outcomes are idempotent on it."""
    service_id: str
    """Model service that should run it."""
    project_id: str
    """Owning project."""
    item: ItemSnapshot
    """The item to predict on (its blob key is in ``metadata.system``)."""
    trigger_id: str | None = None
    """Trigger that created the execution, if any."""
    attempt: int = Field(default=1, ge=1)
    """1 for the first try, higher for reruns."""
    origin: Origin | None = None
    """Which way created the execution (absent from older routers)."""
    blob_base64: str | None = None
    """The item's blob, base64 (RFC 4648, padded), copied from the ``item.created.v1``
    that created the execution when it is at most the router's
    ``TRIGGER_ROUTER_INLINE_BLOB_MAX_BYTES`` (default 65536; 0: never); absent otherwise
    (reruns, batches, pipelines, larger blobs). The worker predicts from these bytes
    without reading S3 when their SHA-256 equals ``item.metadata.system.sha256``, and
    reads the blob from S3 (the source of truth) when it does not."""


class ServiceScaled(Contract):
    """The autoscaler changed a model service's replica count."""

    routing_key = "service.scaled.v1"
    producer = TRIGGER_ROUTER

    service_id: str
    """Model service."""
    project_id: str
    """Owning project."""
    previous_replicas: int = Field(ge=0)
    """Replicas before the change."""
    desired_replicas: int = Field(ge=0)
    """Replicas after the change."""
    load: int = Field(ge=0)
    """Ready + unacknowledged messages that drove the decision."""
    reason: str
    """Why: ``work-arrived``, ``queue-depth``, ``cooldown``, ``budget-exhausted`` ..."""


class ExecutionCancelled(Contract):
    """The trigger-router cancelled an execution: its prediction is not wanted.

    Written to the router's outbox in the transaction that moved the execution to
    ``cancelled`` (a single cancel, a batch cancel, a pipeline predict node's execution, an
    undeployed service's unfinished work), and only then: a cancel the router refused (the
    execution had already succeeded or failed) publishes nothing. The router's ledger
    decides the race: once cancelled, a late outcome of that attempt neither turns the
    execution ``success`` nor moves its pipeline on (no ``add_task_item.v1``); once
    ``success``, it can no longer be cancelled.

    Consumers:

    - model-serving records it; a predict worker skips every request of the execution
      with an attempt up to ``attempt`` that it takes afterwards (acked, no outcome, no
      Triton call), checked when it takes a batch and again right before the model runs.
      A request already with Triton finishes; its outcome is ignored as above.
    - annotation stores no annotations of a ``prediction.completed.v1`` of the execution
      with an attempt up to ``attempt`` (or without one). Annotations already stored when
      the cancel arrives are deleted, and items that prediction added to tasks are taken
      out again, unless a person already reviewed them (edited or deleted one of those
      annotations, or reviewed the task item): a person's work is kept.

    A rerun of the execution is attempt ``attempt + 1``: the cancel does not apply to it.
    Both consumers are idempotent on the execution id and forget a cancel after their
    retention (default 14 days).
    """

    routing_key = "execution.cancelled.v1"
    producer = TRIGGER_ROUTER

    execution_id: str
    """The cancelled execution."""
    project_id: str
    """Owning project."""
    service_id: str
    """Model service whose queue holds (or held) its predict request."""
    item_id: str
    """Item it predicts on."""
    attempt: int = Field(ge=1)
    """The execution's attempt when it was cancelled: requests and predictions of this
    attempt or an earlier one are discarded."""
    reason: str
    """Why, for people (``cancelled by request``, ``batch cancelled`` ...)."""
    cancelled_at: datetime
    """When the router cancelled it."""
    origin: Origin | None = None
    """Which way created the execution."""
