"""All SQL of the trigger-router.

State changes and the events announcing them (predict requests, ``service.scaled.v1``)
commit in one transaction through the outbox. The uniqueness constraints on
``executions`` (one per trigger and event, one per trigger and item for ``Once``)
are what really guard against duplicates: every insert is ``ON CONFLICT DO NOTHING``,
so two replicas racing on the same event or item create one execution.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from common.contracts import (
    ItemSnapshot,
    PredictionCompleted,
    PredictionFailed,
    PredictRequest,
    ReplicaStarted,
    ReplicaStopped,
    ServiceDeployed,
    ServiceScaled,
)
from common.dql import Condition, Node
from common.envelope import CloudEvent, make_event
from common.messaging import enqueue, enqueue_many
from common.topology import TRIGGER_ROUTER, Topology
from trigger_router_service.domain import (
    ACTION_BY_ROUTING_KEY,
    FINAL_STATUSES,
    Action,
    ActiveTrigger,
    ConflictError,
    ExecutionMode,
    ExecutionStatus,
    NotFoundError,
    RouterError,
    ScalingPolicy,
    TriggerSpec,
    compile_filter,
    initial_status,
    matching_triggers,
)

SOURCE = "/services/trigger-router"
ROUTING_CONSUMER = "trigger_router.on_item_event"
"""Consumer name of the item-event claims in ``processed_messages``."""

EXECUTION_COLUMNS = (
    "id, project_id, service_id, trigger_id, batch_id, item_id, dataset_id, event_id, action, "
    "status, attempts, cold_start, replica_id, error, created_at, queued_at, started_at, "
    "finished_at, updated_at"
)


def new_id(prefix: str) -> str:
    """A new entity id, e.g. ``trg_3f2a...``."""
    return f"{prefix}_{uuid.uuid4().hex}"


def wake_channel(schema: str) -> str:
    """The NOTIFY channel that wakes the autoscaler leader (payload: a service id)."""
    return f"scale_{schema}"


# --------------------------------------------------------------------------- models


class Trigger(BaseModel):
    """A trigger as the API shows it."""

    id: str
    project_id: str
    name: str
    active: bool
    status: str
    """``active`` or ``failed`` (its service went away; see ``status_reason``)."""
    status_reason: str | None = None
    spec: TriggerSpec
    created_at: datetime
    updated_at: datetime


class Execution(BaseModel):
    """One item through one model service."""

    id: str
    project_id: str
    service_id: str
    trigger_id: str | None
    batch_id: str | None
    item_id: str
    dataset_id: str
    event_id: str | None
    action: str | None
    status: ExecutionStatus
    attempts: int
    cold_start: bool
    """Whether it waited for a replica to start (queued while the service ran none)."""
    replica_id: str | None
    error: str | None
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class ModelService(BaseModel):
    """The router's view of a model service: settings from model-serving, scaling state."""

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
    error: str | None
    desired_replicas: int
    actual_replicas: int
    running_replicas: int
    """Replicas that reported ``replica.started.v1`` and not yet ``replica.stopped.v1``."""
    last_active_at: datetime | None


class Batch(BaseModel):
    """A browser-style predict request: its executions' progress by status."""

    id: str
    project_id: str
    service_id: str
    selection: dict[str, Any]
    """What picked the items (ids, or a dataset and a DQL filter)."""
    item_count: int
    created_at: datetime
    counts: dict[str, int]
    """Executions per status."""
    finished: int
    """Executions in a final status (success, failed, cancelled)."""
    progress: float
    """``finished / item_count`` (1.0 for an empty batch)."""


@dataclass(frozen=True)
class ExecutionFilter:
    """Filters of an execution list (all optional, AND-ed)."""

    service_id: str | None = None
    trigger_id: str | None = None
    statuses: tuple[ExecutionStatus, ...] = ()
    item_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self, project_id: str) -> tuple[str, list[Any]]:
        """A parameterised ``WHERE`` clause and its arguments."""
        clauses = ["project_id = $1"]
        args: list[Any] = [project_id]

        def add(sql: str, value: Any) -> None:
            args.append(value)
            clauses.append(sql.format(f"${len(args)}"))

        if self.service_id is not None:
            add("service_id = {}", self.service_id)
        if self.trigger_id is not None:
            add("trigger_id = {}", self.trigger_id)
        if self.statuses:
            add("status = ANY({}::text[])", [s.value for s in self.statuses])
        if self.item_id is not None:
            add("item_id = {}", self.item_id)
        if self.since is not None:
            add("created_at >= {}", self.since)
        if self.until is not None:
            add("created_at < {}", self.until)
        return " AND ".join(clauses), args


@dataclass(frozen=True)
class NewExecution:
    """An execution about to be inserted."""

    project_id: str
    service_id: str
    item: ItemSnapshot
    status: ExecutionStatus
    cold_start: bool
    trigger_id: str | None = None
    batch_id: str | None = None
    event_id: str | None = None
    action: str | None = None
    once: bool = False
    id: str = field(default_factory=lambda: new_id("exe"))


@dataclass(frozen=True)
class ItemEvent:
    """A parsed item event, ready to route."""

    event_id: str
    action: Action
    item: ItemSnapshot
    time: datetime


@dataclass
class RouteOutcome:
    """What routing one batch did."""

    duplicates: set[str] = field(default_factory=set)
    """Event ids already routed before (redeliveries)."""
    created: dict[ExecutionStatus, int] = field(default_factory=dict)
    """New executions by initial status."""
    matched: int = 0
    """(trigger, event) matches, including those the constraints turned away."""
    matched_events: set[str] = field(default_factory=set)
    """Event ids that matched at least one trigger."""
    woken: set[str] = field(default_factory=set)
    """Services asked to wake (they were at 0 replicas)."""
    failed_triggers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ScalingRow:
    """One service as the autoscaler sees it."""

    service_id: str
    project_id: str
    status: str
    policy: ScalingPolicy
    desired: int
    actual: int
    last_active_at: datetime | None
    budget_exhausted: bool


@dataclass(frozen=True)
class Released:
    """Executions a ``budget.restored.v1`` released."""

    published: int
    requeued: int
    services: set[str]


MismatchHook = Callable[[ActiveTrigger, Condition, Any], None]


def _trigger(row: asyncpg.Record) -> Trigger:
    return Trigger(
        id=row["id"],
        project_id=row["project_id"],
        name=row["name"],
        active=row["active"],
        status=row["status"],
        status_reason=row["status_reason"],
        spec=TriggerSpec(
            resource=row["resource"],
            actions=list(row["actions"]),
            execution_mode=row["execution_mode"],
            filter=row["filter"],
            operation={"type": row["operation_type"], "service_id": row["service_id"]},
        ),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _execution(row: asyncpg.Record) -> Execution:
    return Execution(**{k: row[k] for k in Execution.model_fields})


def predict_request(
    execution_id: str,
    service_id: str,
    project_id: str,
    item: ItemSnapshot | dict[str, Any],
    trigger_id: str | None,
    attempt: int,
) -> CloudEvent[Any]:
    """The envelope of one execution's predict request; its id is stable per attempt,
    so a retried transaction cannot publish the same attempt twice."""
    snapshot = item if isinstance(item, ItemSnapshot) else ItemSnapshot.model_validate(item)
    return make_event(
        PredictRequest(
            execution_id=execution_id,
            service_id=service_id,
            project_id=project_id,
            item=snapshot,
            trigger_id=trigger_id,
            attempt=attempt,
        ),
        source=SOURCE,
        subject=snapshot.id,
        correlationid=execution_id,
        event_id=f"{execution_id}.{attempt}",
    )


@dataclass
class Repository:
    """All SQL of the trigger-router."""

    pool: asyncpg.Pool
    topology: Topology
    schema: str
    dql_max_depth: int = 10
    _filters: dict[tuple[str, datetime], Node] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ helpers

    async def _publish_predicts(
        self, conn: asyncpg.Connection, requests: Sequence[CloudEvent[Any]], services: list[str]
    ) -> None:
        await enqueue_many(
            conn,
            requests,
            self.topology.predict_exchange,
            exchange_type="direct",
            routing_keys=services,
        )

    async def _wake(self, conn: asyncpg.Connection, services: Sequence[str]) -> None:
        if services:
            await conn.execute(
                "SELECT pg_notify($1, s) FROM unnest($2::text[]) AS s",
                wake_channel(self.schema),
                sorted(set(services)),
            )

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

    # ------------------------------------------------------------------ model services

    async def service_deployed(self, data: ServiceDeployed, at: datetime) -> bool:
        """Store a service's settings unless a newer event already did; True if applied."""
        row = await self.pool.fetchval(
            """INSERT INTO model_services (service_id, project_id, model_id, status,
                   min_replicas, max_replicas, queue_per_replica, cooldown_seconds, concurrency,
                   instance_type, error, event_time)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
               ON CONFLICT (service_id) DO UPDATE SET
                   project_id = excluded.project_id, model_id = excluded.model_id,
                   status = excluded.status, min_replicas = excluded.min_replicas,
                   max_replicas = excluded.max_replicas,
                   queue_per_replica = excluded.queue_per_replica,
                   cooldown_seconds = excluded.cooldown_seconds,
                   concurrency = excluded.concurrency, instance_type = excluded.instance_type,
                   error = excluded.error, event_time = excluded.event_time, updated_at = now()
               WHERE model_services.event_time <= excluded.event_time
               RETURNING 1""",
            data.service_id,
            data.project_id,
            data.model_id,
            data.status,
            data.min_replicas,
            data.max_replicas,
            data.queue_per_replica,
            data.cooldown_seconds,
            data.concurrency,
            data.instance_type,
            data.error,
            at,
        )
        return row is not None

    async def service_undeployed(
        self, service_id: str, project_id: str, at: datetime
    ) -> tuple[bool, int, int]:
        """Mark a service undeployed; fail its triggers and cancel its unfinished executions.

        Returns (applied, triggers failed, executions cancelled).
        """
        async with self.pool.acquire() as conn, conn.transaction():
            applied = await conn.fetchval(
                """INSERT INTO model_services (service_id, project_id, status, event_time)
                   VALUES ($1, $2, 'undeployed', $3)
                   ON CONFLICT (service_id) DO UPDATE SET status = 'undeployed',
                       event_time = excluded.event_time, updated_at = now()
                   WHERE model_services.event_time <= excluded.event_time
                   RETURNING 1""",
                service_id,
                project_id,
                at,
            )
            if applied is None:
                return False, 0, 0
            failed = await self._fail_triggers_of(conn, service_id, "undeployed")
            cancelled = await conn.fetch(
                """UPDATE executions SET status = 'cancelled', finished_at = now(),
                       error = 'model service ' || service_id || ' was undeployed',
                       updated_at = now()
                   WHERE service_id = $1
                     AND status IN ('created', 'queued', 'in-progress', 'waiting-for-budget')
                   RETURNING id""",
                service_id,
            )
            return True, len(failed), len(cancelled)

    async def _fail_triggers_of(
        self, conn: asyncpg.Connection, service_id: str, why: str
    ) -> list[str]:
        rows = await conn.fetch(
            """UPDATE triggers SET status = 'failed', status_reason = $2, updated_at = now()
               WHERE service_id = $1 AND status = 'active' RETURNING id""",
            service_id,
            f"model service {service_id} was {why}; the trigger no longer runs",
        )
        return [r["id"] for r in rows]

    async def service_in_project(self, project_id: str, service_id: str) -> str | None:
        """The service's status if it exists in the project, else ``None``."""
        status: str | None = await self.pool.fetchval(
            "SELECT status FROM model_services WHERE service_id = $1 AND project_id = $2",
            service_id,
            project_id,
        )
        return status

    async def list_services(
        self, project_id: str, service_id: str | None = None
    ) -> list[ModelService]:
        """The project's model services with their scaling state."""
        rows = await self.pool.fetch(
            """SELECT s.*, coalesce(st.desired_replicas, 0) AS desired_replicas,
                      coalesce(st.actual_replicas, 0) AS actual_replicas, st.last_active_at,
                      (SELECT count(*) FROM replicas r
                       WHERE r.service_id = s.service_id AND r.state = 'running')
                          AS running_replicas
               FROM model_services s LEFT JOIN scaling_state st USING (service_id)
               WHERE s.project_id = $1 AND ($2::text IS NULL OR s.service_id = $2)
               ORDER BY s.service_id""",
            project_id,
            service_id,
        )
        return [ModelService(**{k: r[k] for k in ModelService.model_fields}) for r in rows]

    # ------------------------------------------------------------------ budgets

    async def budget_changed(
        self, project_id: str, exhausted: bool, at: datetime
    ) -> tuple[bool, int, Released | None]:
        """Record a budget state unless a newer one is stored.

        Exhausted: queued executions of the project show ``waiting-for-budget``.
        Restored: every waiting execution goes back to ``queued``; those whose predict
        request was held are published now, and their services are woken.
        Returns (applied, executions now waiting, what a restore released).
        """
        async with self.pool.acquire() as conn, conn.transaction():
            applied = await conn.fetchval(
                """INSERT INTO project_budgets (project_id, exhausted, event_time)
                   VALUES ($1, $2, $3)
                   ON CONFLICT (project_id) DO UPDATE SET exhausted = excluded.exhausted,
                       event_time = excluded.event_time, updated_at = now()
                   WHERE project_budgets.event_time <= excluded.event_time
                   RETURNING 1""",
                project_id,
                exhausted,
                at,
            )
            if applied is None:
                return False, 0, None
            if exhausted:
                rows = await conn.fetch(
                    """UPDATE executions SET status = 'waiting-for-budget', updated_at = now()
                       WHERE project_id = $1 AND status = 'queued' RETURNING id""",
                    project_id,
                )
                return True, len(rows), None
            rows = await conn.fetch(
                """WITH w AS (
                       SELECT id, published FROM executions
                       WHERE project_id = $1 AND status = 'waiting-for-budget' FOR UPDATE)
                   UPDATE executions e SET status = 'queued', published = true,
                       queued_at = CASE WHEN w.published THEN e.queued_at ELSE now() END,
                       updated_at = now()
                   FROM w WHERE e.id = w.id
                   RETURNING e.id, e.service_id, e.project_id, e.trigger_id, e.item, e.attempts,
                             w.published AS was_published""",
                project_id,
            )
            held = [r for r in rows if not r["was_published"]]
            await self._publish_predicts(
                conn,
                [
                    predict_request(
                        r["id"],
                        r["service_id"],
                        r["project_id"],
                        r["item"],
                        r["trigger_id"],
                        r["attempts"],
                    )
                    for r in held
                ],
                [r["service_id"] for r in held],
            )
            services = {r["service_id"] for r in rows}
            await self._wake(conn, sorted(services))
            return True, 0, Released(len(held), len(rows) - len(held), services)

    # ------------------------------------------------------------------ triggers

    async def create_trigger(
        self, project_id: str, name: str, active: bool, spec: TriggerSpec
    ) -> Trigger:
        try:
            row = await self.pool.fetchrow(
                """INSERT INTO triggers (id, project_id, name, active, resource, actions,
                       execution_mode, filter, operation_type, service_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *""",
                new_id("trg"),
                project_id,
                name,
                active,
                spec.resource,
                [a.value for a in spec.actions],
                spec.execution_mode.value,
                spec.filter,
                spec.operation.type,
                spec.operation.service_id,
            )
        except asyncpg.UniqueViolationError as exc:
            raise ConflictError(f"a trigger named {name!r} already exists in this project") from exc
        return _trigger(row)

    async def list_triggers(
        self, project_id: str, service_id: str | None = None, active: bool | None = None
    ) -> list[Trigger]:
        rows = await self.pool.fetch(
            """SELECT * FROM triggers WHERE project_id = $1
                 AND ($2::text IS NULL OR service_id = $2)
                 AND ($3::boolean IS NULL OR active = $3)
               ORDER BY created_at, id""",
            project_id,
            service_id,
            active,
        )
        return [_trigger(r) for r in rows]

    async def get_trigger(self, project_id: str, trigger_id: str) -> Trigger:
        row = await self.pool.fetchrow(
            "SELECT * FROM triggers WHERE project_id = $1 AND id = $2", project_id, trigger_id
        )
        if row is None:
            raise NotFoundError(f"trigger {trigger_id} not found")
        return _trigger(row)

    async def update_trigger(
        self,
        project_id: str,
        trigger_id: str,
        *,
        name: str | None = None,
        active: bool | None = None,
        spec: TriggerSpec | None = None,
        revive: bool = False,
    ) -> Trigger:
        """Change a trigger; ``revive`` clears a ``failed`` status (its service is back)."""
        try:
            row = await self.pool.fetchrow(
                """UPDATE triggers SET
                       name = coalesce($3, name),
                       active = coalesce($4, active),
                       resource = coalesce($5, resource),
                       actions = coalesce($6, actions),
                       execution_mode = coalesce($7, execution_mode),
                       filter = coalesce($8, filter),
                       operation_type = coalesce($9, operation_type),
                       service_id = coalesce($10, service_id),
                       status = CASE WHEN $11 THEN 'active' ELSE status END,
                       status_reason = CASE WHEN $11 THEN NULL ELSE status_reason END,
                       updated_at = now()
                   WHERE project_id = $1 AND id = $2 RETURNING *""",
                project_id,
                trigger_id,
                name,
                active,
                spec.resource if spec else None,
                [a.value for a in spec.actions] if spec else None,
                spec.execution_mode.value if spec else None,
                spec.filter if spec else None,
                spec.operation.type if spec else None,
                spec.operation.service_id if spec else None,
                revive,
            )
        except asyncpg.UniqueViolationError as exc:
            raise ConflictError(f"a trigger named {name!r} already exists in this project") from exc
        if row is None:
            raise NotFoundError(f"trigger {trigger_id} not found")
        return _trigger(row)

    async def delete_trigger(self, project_id: str, trigger_id: str) -> None:
        """Delete a trigger; its executions stay in the ledger."""
        deleted = await self.pool.fetchval(
            "DELETE FROM triggers WHERE project_id = $1 AND id = $2 RETURNING 1",
            project_id,
            trigger_id,
        )
        if deleted is None:
            raise NotFoundError(f"trigger {trigger_id} not found")

    # ------------------------------------------------------------------ routing

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
                outcome.failed_triggers += await self._fail_triggers_of(
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
            state = await self._scaling_state(conn, {t.service_id for t in triggers})
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

    async def _scaling_state(
        self, conn: asyncpg.Connection, services: set[str]
    ) -> dict[str, tuple[int, int]]:
        """(desired, actual) replicas per service, as the autoscaler last stored them."""
        rows = await conn.fetch(
            """SELECT service_id, desired_replicas, actual_replicas FROM scaling_state
               WHERE service_id = ANY($1::text[])""",
            sorted(services),
        )
        return {r["service_id"]: (r["desired_replicas"], r["actual_replicas"]) for r in rows}

    async def _create(
        self,
        conn: asyncpg.Connection,
        new: Sequence[NewExecution],
        state: dict[str, tuple[int, int]],
    ) -> tuple[list[asyncpg.Record], set[str]]:
        """Insert executions (the unique indexes turn duplicates away), write the predict
        requests of the queued ones to the outbox and wake their services at 0 replicas.
        Returns the inserted rows and the services woken."""
        if not new:
            return [], set()
        inserted = await conn.fetch(
            """INSERT INTO executions (id, project_id, service_id, trigger_id, batch_id, item_id,
                   dataset_id, event_id, action, once, status, published, cold_start, item,
                   queued_at)
               SELECT i, p, s, t, b, it, d, e, a, o, st, st = 'queued', c, doc,
                      CASE WHEN st = 'queued' THEN now() END
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                           $6::text[], $7::text[], $8::text[], $9::text[], $10::boolean[],
                           $11::text[], $12::boolean[], $13::jsonb[])
                    AS u(i, p, s, t, b, it, d, e, a, o, st, c, doc)
               ON CONFLICT DO NOTHING
               RETURNING id, project_id, service_id, trigger_id, status""",
            [n.id for n in new],
            [n.project_id for n in new],
            [n.service_id for n in new],
            [n.trigger_id for n in new],
            [n.batch_id for n in new],
            [n.item.id for n in new],
            [n.item.dataset_id for n in new],
            [n.event_id for n in new],
            [n.action for n in new],
            [n.once for n in new],
            [n.status.value for n in new],
            [n.cold_start for n in new],
            [n.item.as_filter_document() for n in new],
        )
        by_id = {n.id: n for n in new}
        queued = [r for r in inserted if r["status"] == ExecutionStatus.QUEUED.value]
        await self._publish_predicts(
            conn,
            [
                predict_request(
                    r["id"],
                    r["service_id"],
                    r["project_id"],
                    by_id[r["id"]].item,
                    r["trigger_id"],
                    1,
                )
                for r in queued
            ],
            [r["service_id"] for r in queued],
        )
        sleeping = sorted(
            {r["service_id"] for r in queued if state.get(r["service_id"], (0, 0))[0] == 0}
        )
        await self._wake(conn, sleeping)
        return list(inserted), set(sleeping)

    # ------------------------------------------------------------------ batches

    async def create_batch(
        self,
        project_id: str,
        service_id: str,
        selection: dict[str, Any],
        items: Sequence[ItemSnapshot],
    ) -> Batch:
        """One execution per distinct item, their predict requests (held while the
        budget is exhausted) and a wake-up for the service, in one transaction."""
        unique = list({item.id: item for item in items}.values())
        batch_id = new_id("bat")
        async with self.pool.acquire() as conn, conn.transaction():
            exhausted = bool(
                await conn.fetchval(
                    "SELECT exhausted FROM project_budgets WHERE project_id = $1", project_id
                )
            )
            await conn.execute(
                """INSERT INTO batches (id, project_id, service_id, selection, item_count)
                   VALUES ($1, $2, $3, $4, $5)""",
                batch_id,
                project_id,
                service_id,
                selection,
                len(unique),
            )
            state = await self._scaling_state(conn, {service_id})
            status = initial_status(exhausted)
            cold = state.get(service_id, (0, 0))[1] == 0
            await self._create(
                conn,
                [
                    NewExecution(project_id, service_id, item, status, cold, batch_id=batch_id)
                    for item in unique
                ],
                state,
            )
        return await self.get_batch(project_id, batch_id)

    async def get_batch(self, project_id: str, batch_id: str) -> Batch:
        row = await self.pool.fetchrow(
            "SELECT * FROM batches WHERE project_id = $1 AND id = $2", project_id, batch_id
        )
        if row is None:
            raise NotFoundError(f"batch {batch_id} not found")
        return await self._batch(row)

    async def list_batches(self, project_id: str, limit: int = 100) -> list[Batch]:
        rows = await self.pool.fetch(
            """SELECT * FROM batches WHERE project_id = $1
               ORDER BY created_at DESC, id DESC LIMIT $2""",
            project_id,
            limit,
        )
        return [await self._batch(r) for r in rows]

    async def _batch(self, row: asyncpg.Record) -> Batch:
        counts = {s.value: 0 for s in ExecutionStatus}
        for r in await self.pool.fetch(
            """SELECT status, count(*) AS n FROM executions WHERE batch_id = $1
               GROUP BY status""",
            row["id"],
        ):
            counts[r["status"]] = int(r["n"])
        finished = sum(counts[s.value] for s in FINAL_STATUSES)
        total = row["item_count"]
        return Batch(
            id=row["id"],
            project_id=row["project_id"],
            service_id=row["service_id"],
            selection=row["selection"],
            item_count=total,
            created_at=row["created_at"],
            counts=counts,
            finished=finished,
            progress=finished / total if total else 1.0,
        )

    async def cancel_batch(self, project_id: str, batch_id: str) -> tuple[Batch, int]:
        """Cancel every execution of the batch that has not started; returns how many."""
        await self.get_batch(project_id, batch_id)
        rows = await self.pool.fetch(
            """UPDATE executions SET status = 'cancelled', finished_at = now(),
                   error = 'batch cancelled', updated_at = now()
               WHERE project_id = $1 AND batch_id = $2
                 AND status IN ('created', 'queued', 'waiting-for-budget')
               RETURNING id""",
            project_id,
            batch_id,
        )
        return await self.get_batch(project_id, batch_id), len(rows)

    # ------------------------------------------------------------------ outcomes

    async def prediction_completed(self, data: PredictionCompleted) -> tuple[bool, float | None]:
        """Close an execution as ``success`` (idempotent). Returns (changed, cold-start
        seconds when this was the first prediction after a scale-up from 0)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """UPDATE executions SET status = 'success', replica_id = $2,
                       started_at = $3, finished_at = $4, error = NULL, updated_at = now()
                   WHERE id = $1 AND status NOT IN ('success', 'cancelled')
                   RETURNING service_id""",
                data.execution_id,
                data.replica_id,
                data.started_at,
                data.finished_at,
            )
            if row is None:
                return False, None
            began = await conn.fetchval(
                """UPDATE scaling_state s SET cold_start_began_at = NULL
                   FROM (SELECT service_id, cold_start_began_at FROM scaling_state
                         WHERE service_id = $1 FOR UPDATE) old
                   WHERE s.service_id = old.service_id AND old.cold_start_began_at IS NOT NULL
                     AND old.cold_start_began_at <= $2
                   RETURNING old.cold_start_began_at""",
                row["service_id"],
                data.finished_at,
            )
        cold = (data.finished_at - began).total_seconds() if began is not None else None
        return True, cold

    async def prediction_failed(self, data: PredictionFailed, at: datetime) -> bool:
        """Close an unfinished execution as ``failed`` with the reason (idempotent)."""
        row = await self.pool.fetchval(
            """UPDATE executions SET status = 'failed', error = $2,
                   replica_id = coalesce($3, replica_id), finished_at = $4, updated_at = now()
               WHERE id = $1
                 AND status IN ('created', 'queued', 'in-progress', 'waiting-for-budget')
               RETURNING 1""",
            data.execution_id,
            data.reason[:2000],
            data.replica_id,
            at,
        )
        return row is not None

    async def replica_started(self, data: ReplicaStarted, at: datetime) -> float | None:
        """Record a running replica (``at``: when it reported its model loaded); returns
        seconds from its service being asked to scale up from 0 until then, when that
        applies (process start and model load)."""
        async with self.pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                """INSERT INTO replicas (replica_id, service_id, project_id, state, started_at)
                   VALUES ($1, $2, $3, 'running', $4) ON CONFLICT DO NOTHING RETURNING 1""",
                data.replica_id,
                data.service_id,
                data.project_id,
                data.started_at,
            )
            if inserted is None:
                return None
            began: datetime | None = await conn.fetchval(
                "SELECT cold_start_began_at FROM scaling_state WHERE service_id = $1",
                data.service_id,
            )
        if began is None or at < began:
            return None
        return (at - began).total_seconds()

    async def replica_stopped(self, data: ReplicaStopped) -> bool:
        """Record a stopped replica (idempotent; a late ``started`` cannot revive it)."""
        row = await self.pool.fetchval(
            """INSERT INTO replicas (replica_id, service_id, project_id, state, started_at,
                   stopped_at)
               VALUES ($1, $2, $3, 'stopped', $4, $5)
               ON CONFLICT (replica_id) DO UPDATE SET state = 'stopped',
                   stopped_at = excluded.stopped_at,
                   started_at = coalesce(replicas.started_at, excluded.started_at),
                   updated_at = now()
               WHERE replicas.state <> 'stopped'
               RETURNING 1""",
            data.replica_id,
            data.service_id,
            data.project_id,
            data.started_at,
            data.stopped_at,
        )
        return row is not None

    # ------------------------------------------------------------------ executions API

    async def list_executions(
        self, project_id: str, filters: ExecutionFilter, page: int, page_size: int
    ) -> tuple[list[Execution], int]:
        where, args = filters.where(project_id)
        n = len(args)
        rows = await self.pool.fetch(
            f"""SELECT {EXECUTION_COLUMNS}, count(*) OVER () AS total FROM executions
                WHERE {where} ORDER BY created_at DESC, id DESC
                LIMIT ${n + 1} OFFSET ${n + 2}""",
            *args,
            page_size,
            page * page_size,
        )
        if rows:
            total = int(rows[0]["total"])
        else:
            total = int(
                await self.pool.fetchval(f"SELECT count(*) FROM executions WHERE {where}", *args)
            )
        return [_execution(r) for r in rows], total

    async def count_executions(self, project_id: str, filters: ExecutionFilter) -> dict[str, int]:
        where, args = filters.where(project_id)
        rows = await self.pool.fetch(
            f"SELECT status, count(*) AS n FROM executions WHERE {where} GROUP BY status", *args
        )
        counts = {s.value: 0 for s in ExecutionStatus}
        counts.update({r["status"]: int(r["n"]) for r in rows})
        return counts

    async def get_execution(self, project_id: str, execution_id: str) -> Execution:
        row = await self.pool.fetchrow(
            f"SELECT {EXECUTION_COLUMNS} FROM executions WHERE project_id = $1 AND id = $2",
            project_id,
            execution_id,
        )
        if row is None:
            raise NotFoundError(f"execution {execution_id} not found")
        return _execution(row)

    async def rerun(
        self, project_id: str, filters: ExecutionFilter, execution_id: str | None = None
    ) -> list[Execution]:
        """Run failed (or cancelled) executions again: attempt + 1, a new predict request.

        With ``execution_id`` exactly that one (404 if absent, 409 if not rerunnable);
        otherwise every failed execution matching ``filters``.
        """
        where, args = filters.where(project_id)
        if execution_id is not None:
            args.append(execution_id)
            where += f" AND id = ${len(args)}"
            where += " AND status IN ('failed', 'cancelled')"
        else:
            where += " AND status = 'failed'"
        async with self.pool.acquire() as conn, conn.transaction():
            exhausted = bool(
                await conn.fetchval(
                    "SELECT exhausted FROM project_budgets WHERE project_id = $1", project_id
                )
            )
            status = initial_status(exhausted)
            n = len(args)
            rows = await conn.fetch(
                f"""UPDATE executions SET status = ${n + 1}, attempts = attempts + 1,
                        published = ${n + 1} = 'queued', error = NULL, replica_id = NULL,
                        started_at = NULL, finished_at = NULL,
                        queued_at = CASE WHEN ${n + 1} = 'queued' THEN now() END,
                        updated_at = now()
                    WHERE id IN (SELECT id FROM executions WHERE {where} FOR UPDATE)
                    RETURNING {EXECUTION_COLUMNS}, item""",
                *args,
                status.value,
            )
            if execution_id is not None and not rows:
                current = await conn.fetchval(
                    "SELECT status FROM executions WHERE project_id = $1 AND id = $2",
                    project_id,
                    execution_id,
                )
                if current is None:
                    raise NotFoundError(f"execution {execution_id} not found")
                raise ConflictError(
                    f"execution {execution_id} is {current}; only failed or cancelled "
                    "executions can be rerun"
                )
            if status is ExecutionStatus.QUEUED:
                await self._publish_predicts(
                    conn,
                    [
                        predict_request(
                            r["id"],
                            r["service_id"],
                            r["project_id"],
                            r["item"],
                            r["trigger_id"],
                            r["attempts"],
                        )
                        for r in rows
                    ],
                    [r["service_id"] for r in rows],
                )
                await self._wake(conn, [r["service_id"] for r in rows])
        return [_execution(r) for r in rows]

    async def cancel(self, project_id: str, execution_id: str) -> Execution:
        """Cancel an execution that has not started; a late outcome does not undo it."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""UPDATE executions SET status = 'cancelled', finished_at = now(),
                        error = 'cancelled by request', updated_at = now()
                    WHERE project_id = $1 AND id = $2
                      AND status IN ('created', 'queued', 'waiting-for-budget')
                    RETURNING {EXECUTION_COLUMNS}""",
                project_id,
                execution_id,
            )
            if row is None:
                current = await conn.fetchval(
                    "SELECT status FROM executions WHERE project_id = $1 AND id = $2",
                    project_id,
                    execution_id,
                )
                if current is None:
                    raise NotFoundError(f"execution {execution_id} not found")
                raise ConflictError(
                    f"execution {execution_id} is {current}; it cannot be cancelled"
                )
        return _execution(row)

    # ------------------------------------------------------------------ autoscaler

    async def scaling_rows(self, service_ids: Sequence[str] | None = None) -> list[ScalingRow]:
        """Services to scale: every deployed one, plus undeployed ones still holding replicas."""
        rows = await self.pool.fetch(
            """SELECT s.service_id, s.project_id, s.status, s.min_replicas, s.max_replicas,
                      s.queue_per_replica, s.cooldown_seconds, s.concurrency,
                      coalesce(st.desired_replicas, 0) AS desired,
                      coalesce(st.actual_replicas, 0) AS actual, st.last_active_at,
                      coalesce(b.exhausted, false) AS exhausted
               FROM model_services s
               LEFT JOIN scaling_state st USING (service_id)
               LEFT JOIN project_budgets b ON b.project_id = s.project_id
               WHERE ($1::text[] IS NULL OR s.service_id = ANY($1::text[]))
                 AND (s.status <> 'undeployed' OR coalesce(st.desired_replicas, 0) > 0
                      OR coalesce(st.actual_replicas, 0) > 0)
               ORDER BY s.service_id""",
            list(service_ids) if service_ids is not None else None,
        )
        return [
            ScalingRow(
                service_id=r["service_id"],
                project_id=r["project_id"],
                status=r["status"],
                policy=ScalingPolicy(
                    min_replicas=r["min_replicas"],
                    max_replicas=r["max_replicas"],
                    queue_per_replica=r["queue_per_replica"],
                    cooldown_seconds=r["cooldown_seconds"],
                    concurrency=r["concurrency"],
                ),
                desired=r["desired"],
                actual=r["actual"],
                last_active_at=r["last_active_at"],
                budget_exhausted=r["exhausted"],
            )
            for r in rows
        ]

    async def outstanding(
        self, service_ids: Sequence[str], horizon_seconds: float
    ) -> dict[str, int]:
        """Published, unfinished executions per service (queued within the horizon)."""
        rows = await self.pool.fetch(
            """SELECT service_id, count(*) AS n FROM executions
               WHERE status IN ('queued', 'in-progress') AND published
                 AND service_id = ANY($1::text[])
                 AND queued_at > now() - make_interval(secs => $2)
               GROUP BY service_id""",
            list(service_ids),
            horizon_seconds,
        )
        return {r["service_id"]: int(r["n"]) for r in rows}

    async def mark_active(self, active: dict[str, str], at: datetime) -> None:
        """Record that these services (id -> project) had load at ``at``."""
        if not active:
            return
        await self.pool.execute(
            """INSERT INTO scaling_state (service_id, project_id, last_active_at)
               SELECT s, p, $3 FROM unnest($1::text[], $2::text[]) AS u(s, p)
               ON CONFLICT (service_id) DO UPDATE SET last_active_at = excluded.last_active_at,
                   updated_at = now()""",
            list(active),
            list(active.values()),
            at,
        )

    async def record_actual(self, service_id: str, project_id: str, actual: int) -> None:
        """Store the replicas the backend reports (routing uses it for the cold-start flag)."""
        await self.pool.execute(
            """INSERT INTO scaling_state (service_id, project_id, actual_replicas)
               VALUES ($1, $2, $3)
               ON CONFLICT (service_id) DO UPDATE SET actual_replicas = excluded.actual_replicas,
                   updated_at = now()""",
            service_id,
            project_id,
            actual,
        )

    async def record_scaled(
        self,
        service_id: str,
        project_id: str,
        previous: int,
        desired: int,
        load: int,
        reason: str,
        at: datetime,
    ) -> None:
        """Store a new desired replica count and emit ``service.scaled.v1`` with it."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO scaling_state (service_id, project_id, desired_replicas,
                       cold_start_began_at, last_active_at)
                   VALUES ($1, $2, $3, CASE WHEN $4 = 0 AND $3 > 0 THEN $5::timestamptz END, $5)
                   ON CONFLICT (service_id) DO UPDATE SET
                       desired_replicas = excluded.desired_replicas,
                       cold_start_began_at = CASE
                           WHEN excluded.desired_replicas = 0 THEN NULL
                           WHEN $4 = 0 THEN coalesce(scaling_state.cold_start_began_at, $5)
                           ELSE scaling_state.cold_start_began_at END,
                       last_active_at = coalesce(scaling_state.last_active_at, $5),
                       updated_at = now()""",
                service_id,
                project_id,
                desired,
                previous,
                at,
            )
            await enqueue(
                conn,
                make_event(
                    ServiceScaled(
                        service_id=service_id,
                        project_id=project_id,
                        previous_replicas=previous,
                        desired_replicas=desired,
                        load=load,
                        reason=reason,
                    ),
                    source=SOURCE,
                    subject=service_id,
                    time=at,
                ),
                self.topology.events_exchange(TRIGGER_ROUTER),
            )


def item_event(event: CloudEvent[Any]) -> ItemEvent:
    """An item event envelope (already validated) as the router routes it."""
    action = ACTION_BY_ROUTING_KEY.get(event.routing_key)
    if action is None:
        raise RouterError(f"{event.type} is not an item event the router handles")
    return ItemEvent(event.id, action, event.data.item, event.time)
