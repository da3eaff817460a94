"""All SQL of the annotation service, one module per aggregate (annotations, tasks, task
items, items, cancelled executions). Every event goes through the outbox in the transaction of the change it
announces (:meth:`Store.publish`)."""

from __future__ import annotations

from annotation_service.repository.annotations import Annotations
from annotation_service.repository.base import Store, annotation_view, task_item_view
from annotation_service.repository.cancels import Cancels, Discarded
from annotation_service.repository.items import Items
from annotation_service.repository.task_items import TaskItems
from annotation_service.repository.tasks import Tasks

__all__ = ["Discarded", "Repository", "Store", "annotation_view", "task_item_view"]


class Repository(Annotations, Tasks, TaskItems, Items, Cancels):
    """The annotation service's repository: every aggregate's part on one pool."""
