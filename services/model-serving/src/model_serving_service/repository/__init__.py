"""PostgreSQL access of model-serving: models, services, replicas, predict outcomes and
cancelled executions.

Every state change that other services must learn about writes its event to the outbox
in the same transaction (``ServiceDeployed``, ``ReplicaStarted`` ...).
"""

from __future__ import annotations

from model_serving_service.repository.cancels import CancelRows
from model_serving_service.repository.models import ModelRows
from model_serving_service.repository.outcomes import OutcomeRows
from model_serving_service.repository.replicas import ReplicaRows
from model_serving_service.repository.services import ServiceRows


class Repository(ModelRows, ServiceRows, ReplicaRows, OutcomeRows, CancelRows):
    """Tables of one model-serving schema (one module per aggregate)."""
