"""Versioned message contracts, one module per producer, and their registry.

The registry maps routing keys (``item.created.v1``) to contract classes, so a
consumer can parse any envelope it receives and the AsyncAPI document and JSON
Schema snapshots are generated from one list.
"""

from __future__ import annotations

from common.contracts.annotation import (
    AddTaskItem,
    AnnotationsCreated,
    CreatedAnnotation,
    TaskItemAdded,
    TaskItemReviewed,
)
from common.contracts.base import Contract
from common.contracts.billing import BudgetExhausted, BudgetRestored
from common.contracts.dataset import (
    INLINE_BLOB_CEILING_BYTES,
    IngestItem,
    ItemCreated,
    ItemDeleted,
    ItemMetadataUpdated,
    ItemSnapshot,
    ItemUpdated,
    SystemMetadata,
    encode_inline_blob,
    inline_blob_size,
    verified_inline_blob,
)
from common.contracts.model_serving import (
    ModelRef,
    PredictedAnnotation,
    PredictionCompleted,
    PredictionFailed,
    PredictionStarted,
    ReplicaStarted,
    ReplicaStopped,
    ServiceDeployed,
    ServiceUndeployed,
    StartedExecution,
)
from common.contracts.trigger_router import (
    ExecutionCancelled,
    Origin,
    PredictRequest,
    ServiceScaled,
    Way,
)

ALL_CONTRACTS: tuple[type[Contract], ...] = (
    ItemCreated,
    ItemUpdated,
    ItemMetadataUpdated,
    ItemDeleted,
    IngestItem,
    PredictRequest,
    ServiceScaled,
    ExecutionCancelled,
    PredictionStarted,
    PredictionCompleted,
    PredictionFailed,
    ReplicaStarted,
    ReplicaStopped,
    ServiceDeployed,
    ServiceUndeployed,
    AnnotationsCreated,
    AddTaskItem,
    TaskItemAdded,
    TaskItemReviewed,
    BudgetExhausted,
    BudgetRestored,
)

REGISTRY: dict[str, type[Contract]] = {c.routing_key: c for c in ALL_CONTRACTS}


def routing_key_of(contract: type[object]) -> str:
    """The routing key of a contract class."""
    if not (isinstance(contract, type) and issubclass(contract, Contract)):
        raise TypeError(f"{contract!r} is not a prelabel contract")
    return contract.routing_key


__all__ = [
    "ALL_CONTRACTS",
    "INLINE_BLOB_CEILING_BYTES",
    "REGISTRY",
    "AddTaskItem",
    "AnnotationsCreated",
    "BudgetExhausted",
    "BudgetRestored",
    "Contract",
    "CreatedAnnotation",
    "ExecutionCancelled",
    "IngestItem",
    "ItemCreated",
    "ItemDeleted",
    "ItemMetadataUpdated",
    "ItemSnapshot",
    "ItemUpdated",
    "ModelRef",
    "Origin",
    "PredictRequest",
    "PredictedAnnotation",
    "PredictionCompleted",
    "PredictionFailed",
    "PredictionStarted",
    "ReplicaStarted",
    "ReplicaStopped",
    "ServiceDeployed",
    "ServiceScaled",
    "ServiceUndeployed",
    "StartedExecution",
    "SystemMetadata",
    "TaskItemAdded",
    "TaskItemReviewed",
    "Way",
    "encode_inline_blob",
    "inline_blob_size",
    "routing_key_of",
    "verified_inline_blob",
]
