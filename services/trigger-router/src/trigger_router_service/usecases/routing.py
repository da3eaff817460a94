"""Routing item events: claims, trigger matching, executions and wake-ups in one transaction."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from trigger_router_service.domain.executions import ExecutionStatus
from trigger_router_service.domain.routing import (
    FilterCache,
    ItemEvent,
    RouteOutcome,
    fresh_events,
    split_triggers,
    trigger_executions,
)
from trigger_router_service.domain.triggers import MismatchHook
from trigger_router_service.repository import Repository
from trigger_router_service.repository.scaling import scaling_state
from trigger_router_service.repository.triggers import fail_triggers_of
from trigger_router_service.usecases.pipelines import PipelineEngine


class ItemRouting:
    """Item events through the triggers to new executions."""

    def __init__(self, repo: Repository, pipelines: PipelineEngine | None = None) -> None:
        self.repo = repo
        self.filters = FilterCache(repo.dql_max_depth)
        self.pipelines = pipelines or PipelineEngine(repo)

    async def route(
        self, events: Sequence[ItemEvent], *, on_mismatch: MismatchHook | None = None
    ) -> RouteOutcome:
        """Route a batch of item events in one transaction.

        Claims each event id (a redelivered event is a duplicate), matches every
        active trigger of the events' projects, creates the executions (the unique
        indexes turn away a second ``Once`` run and a second run per event), writes
        their predict requests to the outbox (held for projects out of budget) and
        wakes services at 0 replicas. Items that enter a running pipeline's dataset node
        get a pipeline execution, and its first nodes run, in the same transaction.
        """
        outcome = RouteOutcome()
        repo = self.repo
        async with repo.transaction() as conn:
            fresh = await repo.claim_events(conn, [e.event_id for e in events])
            todo, outcome.duplicates = fresh_events(events, fresh)
            if not todo:
                return outcome
            projects = sorted({e.item.project_id for e in todo})
            await self._pipelines(conn, todo, projects, outcome)
            triggers, gone = split_triggers(
                await repo.routing_triggers(conn, projects), self.filters
            )
            for service_id, why in gone.items():
                outcome.failed_triggers += await fail_triggers_of(conn, service_id, why)
            if not triggers:
                return outcome
            exhausted = await repo.exhausted_projects(conn, projects)
            state = await scaling_state(conn, {t.service_id for t in triggers})
            new = trigger_executions(
                todo, triggers, exhausted, state, outcome, on_mismatch=on_mismatch
            )
            inserted, woken = await repo.create_executions(conn, new, state)
            outcome.woken |= woken
            for r in inserted:
                status = ExecutionStatus(r["status"])
                outcome.created[status] = outcome.created.get(status, 0) + 1
        return outcome

    async def _pipelines(
        self,
        conn: asyncpg.Connection,
        events: Sequence[ItemEvent],
        projects: Sequence[str],
        outcome: RouteOutcome,
    ) -> None:
        running = await self.repo.running_pipelines(conn, projects)
        if not running:
            return
        runs = self.pipelines.entries(running, events)
        if not runs:
            return
        entered = await self.pipelines.enter(conn, runs)
        outcome.pipeline_runs += entered.runs
        outcome.matched_events |= {new.event_id for new, _ in runs if new.event_id}
        for execution in entered.executions:
            outcome.created[execution.status] = outcome.created.get(execution.status, 0) + 1
