"""Cancelled executions: ``execution.cancelled.v1`` from the trigger-router.

The router publishes a cancel only for an execution it moved to ``cancelled`` before any
outcome closed it, and from then on ignores its outcome: the annotation service keeps no
annotations of it either. Whichever arrives first, the cancel or the prediction, the
result is the same (they serialise on the execution's advisory lock, see
:mod:`annotation_service.repository.cancels`):

- the cancel first: it is remembered, and the prediction (of that attempt or an earlier
  one) stores nothing and adds its item to no task (:func:`~.ingest.store_predictions`);
- the prediction first: the cancel deletes the execution's model annotations and takes
  the items that prediction added to tasks out again, unless a person already reviewed
  them (edited or deleted one of those annotations, or reviewed the task item): then
  everything is kept, a person's work is not thrown away.

A rerun of the execution is a later attempt and is stored as usual. Idempotent: a
redelivered cancel finds nothing left to remove.
"""

from __future__ import annotations

import logging

from annotation_service.repository import Discarded, Repository
from common.contracts import ExecutionCancelled

log = logging.getLogger(__name__)


async def cancel_execution(
    repo: Repository, data: ExecutionCancelled, retention_seconds: float
) -> tuple[bool, Discarded]:
    """Remember the cancel and take back what the execution's prediction stored, in one
    transaction; (whether the cancel was new, what was taken back)."""
    async with repo.pool.acquire() as conn, conn.transaction():
        await repo.lock_executions(conn, [data.execution_id], exclusive=True)
        new = await repo.record_cancel(conn, data, retention_seconds)
        discarded = await repo.discard_prediction(
            conn, data.project_id, data.execution_id, data.attempt
        )
    if discarded.kept:
        log.info(
            "cancelled execution's annotations kept: a person already reviewed them",
            extra={"execution_id": data.execution_id},
        )
    elif discarded.annotations or discarded.task_items:
        log.info(
            "cancelled execution's annotations removed",
            extra={
                "execution_id": data.execution_id,
                "annotations": discarded.annotations,
                "task_items": discarded.task_items,
            },
        )
    return new, discarded
