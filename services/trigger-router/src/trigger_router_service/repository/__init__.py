"""All SQL of the trigger-router, one module per aggregate.

State changes and the events announcing them (predict requests, ``service.scaled.v1``)
commit in one transaction through the outbox. The uniqueness constraints on
``executions`` (one per trigger and event, one per trigger and item for ``Once``)
are what really guard against duplicates: every insert is ``ON CONFLICT DO NOTHING``,
so two replicas racing on the same event or item create one execution.
"""

from __future__ import annotations

from trigger_router_service.repository.batches import Batches
from trigger_router_service.repository.budgets import Budgets
from trigger_router_service.repository.pipelines import Pipelines
from trigger_router_service.repository.replicas import Replicas
from trigger_router_service.repository.routing import Routing
from trigger_router_service.repository.scaling import Scaling
from trigger_router_service.repository.services import Services
from trigger_router_service.repository.triggers import Triggers


class Repository(Triggers, Services, Budgets, Routing, Batches, Pipelines, Replicas, Scaling):
    """The trigger-router's repository: every aggregate's part on one pool."""
