"""Routing item events: claims, trigger matching, executions and wake-ups in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from common.dql import Node
from trigger_router_service.domain.executions import (
    ExecutionStatus,
    initial_status,
)
from trigger_router_service.domain.routing import ItemEvent, RouteOutcome
from trigger_router_service.domain.triggers import (
    Action,
    ActiveTrigger,
    ExecutionMode,
    MismatchHook,
    compile_filter,
    matching_triggers,
)
from trigger_router_service.repository.executions import (
    Executions,
    NewExecution,
)
from trigger_router_service.repository.scaling import scaling_state
from trigger_router_service.repository.triggers import fail_triggers_of

ROUTING_CONSUMER = "trigger_router.on_item_event"
"""Consumer name of the item-event claims in ``processed_messages``."""


class Routing(Executions):
    """Item events through the triggers to new executions."""

    def _compiled(self, trigger_id: str, updated_at: datetime, filter_: Any) -> Node:
        # Parsed filters are cached by (id, updated_at): a changed trigger has a new key,
        # so edits take effect on the next event without a restart.
        key = (trigger_id, updated_at)
        node = self._filters.get(key)
        if node is None:
            if len(self._filters) > 10_000:
                self._filters.clear()
            node = compile_filter(filter_, max_depth=self.dql_max_depth)
            self._filters[key] = node
        return node

    async def route(
        self, events: Sequence[ItemEvent], *, on_mismatch: MismatchHook | None = None
    ) -> RouteOutcome:
        """Route a batch of item events in one transaction.

        Claims each event id (a redelivered event is a duplicate), matches every
        active trigger of the events' projects, creates the executions (the unique
        indexes turn away a second ``Once`` run and a second run per event), writes
        their predict requests to the outbox (held for projects out of budget) and
        wakes services at 0 replicas.
        """
        outcome = RouteOutcome()
        async with self.pool.acquire() as conn, conn.transaction():
            ids = [e.event_id for e in events]
            fresh_rows = await conn.fetch(
                """INSERT INTO processed_messages (consumer, message_id)
                   SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING RETURNING message_id""",
                ROUTING_CONSUMER,
                ids,
            )
            fresh = {r["message_id"] for r in fresh_rows}
            todo: list[ItemEvent] = []
            for event in events:
                if event.event_id in fresh:
                    fresh.discard(event.event_id)
                    todo.append(event)
                else:
                    outcome.duplicates.add(event.event_id)
            if not todo:
                return outcome
            projects = sorted({e.item.project_id for e in todo})
            trigger_rows = await conn.fetch(
                """SELECT t.id, t.project_id, t.service_id, t.actions, t.execution_mode, t.filter,
                          t.updated_at, s.status AS service_status
                   FROM triggers t
                   LEFT JOIN model_services s
                          ON s.service_id = t.service_id AND s.project_id = t.project_id
                   WHERE t.project_id = ANY($1::text[]) AND t.active AND t.status = 'active'""",
                projects,
            )
            triggers: list[ActiveTrigger] = []
            gone: dict[str, str] = {}
            for r in trigger_rows:
                if r["service_status"] in (None, "undeployed"):
                    gone[r["service_id"]] = r["service_status"] or "missing"
                    continue
                triggers.append(
                    ActiveTrigger(
                        id=r["id"],
                        project_id=r["project_id"],
                        service_id=r["service_id"],
                        actions=frozenset(Action(a) for a in r["actions"]),
                        mode=ExecutionMode(r["execution_mode"]),
                        filter=self._compiled(r["id"], r["updated_at"], r["filter"]),
                    )
                )
            for service_id, why in gone.items():
                outcome.failed_triggers += await fail_triggers_of(
                    conn, service_id, "undeployed" if why == "undeployed" else "not found"
                )
            if not triggers:
                return outcome
            exhausted = {
                r["project_id"]
                for r in await conn.fetch(
                    """SELECT project_id FROM project_budgets
                       WHERE exhausted AND project_id = ANY($1::text[])""",
                    projects,
                )
            }
            state = await scaling_state(conn, {t.service_id for t in triggers})
            new: list[NewExecution] = []
            for event in todo:
                document = event.item.as_filter_document()
                for trigger in matching_triggers(
                    triggers, event.action, document, on_mismatch=on_mismatch
                ):
                    outcome.matched += 1
                    outcome.matched_events.add(event.event_id)
                    new.append(
                        NewExecution(
                            project_id=trigger.project_id,
                            service_id=trigger.service_id,
                            item=event.item,
                            status=initial_status(trigger.project_id in exhausted),
                            cold_start=state.get(trigger.service_id, (0, 0))[1] == 0,
                            trigger_id=trigger.id,
                            event_id=event.event_id,
                            action=event.action.value,
                            once=trigger.mode is ExecutionMode.ONCE,
                        )
                    )
            inserted, outcome.woken = await self._create(conn, new, state)
            for r in inserted:
                status = ExecutionStatus(r["status"])
                outcome.created[status] = outcome.created.get(status, 0) + 1
        return outcome
