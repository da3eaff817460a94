"""The autoscaler: one leader among the router replicas sizes every model service.

Leadership is a PostgreSQL advisory lock held on a dedicated connection; followers
try again every ``leader_retry_seconds``, and the lock goes with the connection when
a leader dies, so another replica takes over within a second or so.

The leader reconciles every ``reconcile_seconds`` from the real queue depth (a
passive ``queue.declare`` gives ready messages and consumers without the management
plugin), so work published by anyone wakes a service. It also LISTENs on a channel
the routing transaction NOTIFYs when it queues work for a service at 0 replicas,
and reconciles just that service at once: no polling delay on a cold start.

Load = ready + unacknowledged messages. A passive declare counts only ready ones;
unacked = clamp(ledger's published-and-unfinished executions - ready, 0,
consumers * concurrency) (see :func:`domain.scaling.estimate_load`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime

import asyncpg

from common.tasks import raise_if_cancelling
from common.topology import Topology
from trigger_router_service import metrics
from trigger_router_service.adapters.queues import QueueInspector
from trigger_router_service.adapters.scalers import ScalerBackend, ScalerError, ServiceRef
from trigger_router_service.domain.scaling import QueueStats, ScalingInput, decide, estimate_load
from trigger_router_service.repository import Repository
from trigger_router_service.repository.base import wake_channel
from trigger_router_service.repository.scaling import ScalingRow

log = logging.getLogger(__name__)


def leader_lock_key(schema: str) -> int:
    """The advisory lock id of the autoscaler of one schema (deployments sharing a
    database in different schemas each get their own leader)."""
    digest = hashlib.sha256(f"trigger_router.autoscaler:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Autoscaler:
    """Leader election plus the reconcile loop; see the module docstring."""

    def __init__(
        self,
        *,
        repo: Repository,
        backend: ScalerBackend,
        topology: Topology,
        dsn: str,
        schema: str,
        amqp_url: str,
        reconcile_seconds: float = 1.0,
        leader_retry_seconds: float = 1.0,
        inflight_horizon_seconds: float = 900.0,
    ) -> None:
        self.repo = repo
        self.backend = backend
        self._topology = topology
        self._dsn = dsn
        self._schema = schema
        self._inspector = QueueInspector(amqp_url)
        self._reconcile_seconds = reconcile_seconds
        self._retry_seconds = leader_retry_seconds
        self._horizon = inflight_horizon_seconds
        self._pass_timeout = max(10.0, reconcile_seconds * 10)
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._woken: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self.is_leader = False
        self.reconciles = 0
        """Completed reconciles while leader (tests wait on it)."""

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Compete for leadership in the background."""
        self._task = asyncio.create_task(self._run(), name="autoscaler")

    async def stop(self) -> None:
        """Step down and stop the backend (local replicas drain and exit)."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._inspector.close()
        await self.backend.close()

    async def _run(self) -> None:
        key = leader_lock_key(self._schema)
        while not self._stopping.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                    await self._lead(conn)
            except asyncio.CancelledError:
                raise
            except Exception:
                raise_if_cancelling()
                log.exception("autoscaler failed; stepping down and retrying")
            finally:
                if self.is_leader:
                    log.info("autoscaler leadership released")
                    # What a leader measured is the new leader's to report: two replicas
                    # both exporting a service's queue and replicas would double count.
                    metrics.clear_leader_gauges()
                    if not self._stopping.is_set():
                        with contextlib.suppress(Exception):
                            await asyncio.shield(self.backend.step_down())
                self.is_leader = False
                metrics.LEADER.set(0)
                if conn is not None:
                    # Closing the session releases the advisory lock.
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._retry_seconds)

    def _on_wake(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._woken.setdefault(payload, time.monotonic())
        self._wake.set()

    async def _lead(self, conn: asyncpg.Connection) -> None:
        self.is_leader = True
        metrics.LEADER.set(1)
        log.info("autoscaler leadership taken")
        await conn.add_listener(wake_channel(self._schema), self._on_wake)
        next_full = 0.0
        while not self._stopping.is_set():
            if self._woken:
                woken, self._woken = self._woken, {}
                await self._guarded(self.reconcile(woken))
            now = time.monotonic()
            if now >= next_full:
                # Proves the lock's session is alive: a lost session raises here and this
                # replica steps down instead of scaling without the lock.
                await conn.fetchval("SELECT 1", timeout=self._reconcile_seconds * 5)
                await self._guarded(self.backend.sync())
                await self._guarded(self.reconcile())
                next_full = time.monotonic() + self._reconcile_seconds
            self._wake.clear()
            if self._woken:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(next_full - time.monotonic(), 0))

    async def _guarded(self, work: Awaitable[None]) -> None:
        # A slow or failing broker, database or backend fails one pass, not the
        # leadership: the next pass retries (and a wedged call is cut off).
        try:
            await asyncio.wait_for(work, self._pass_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            metrics.RECONCILE_ERRORS.inc()
            log.warning("autoscaler pass failed; retrying", extra={"error": repr(exc)})

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, woken: dict[str, float] | None = None) -> None:
        """One pass over every service (or only the ``woken`` ones, id -> wake time)."""
        rows = await self.repo.scaling_rows(list(woken) if woken is not None else None)
        if rows:
            outstanding = await self.repo.outstanding([r.service_id for r in rows], self._horizon)
            at = datetime.now(UTC)
            active: dict[str, str] = {}
            for row in rows:
                if await self._decide(row, outstanding.get(row.service_id, 0), woken or {}, at):
                    active[row.service_id] = row.project_id
            await self.repo.mark_active(active, at)
            await self._observe_actual(rows)
        self.reconciles += 1

    async def _decide(
        self, row: ScalingRow, outstanding: int, woken: dict[str, float], at: datetime
    ) -> bool:
        exists, ready, consumers = await self._inspector.stats(
            self._topology.predict_queue(row.service_id)
        )
        stats = QueueStats(ready, consumers, outstanding, exists)
        load = estimate_load(stats, row.policy.concurrency)
        metrics.QUEUE_READY.labels(row.service_id).set(ready)
        metrics.QUEUE_CONSUMERS.labels(row.service_id).set(consumers)
        metrics.QUEUE_DEPTH.labels(row.service_id).set(load)
        decision = decide(
            ScalingInput(
                policy=row.policy,
                current=row.desired,
                load=load,
                now=at.timestamp(),
                last_active=row.last_active_at.timestamp() if row.last_active_at else None,
                budget_exhausted=row.budget_exhausted,
                woken=row.service_id in woken,
                deployed=row.status == "ready",
            )
        )
        ref = ServiceRef(row.service_id, row.project_id)
        desired = decision.desired
        try:
            if decision.changed or self.backend.requested(row.service_id) != desired:
                # Also re-applies the stored count once after a leader change.
                await self.backend.scale(ref, desired)
        except ScalerError as exc:
            metrics.SCALER_ERRORS.labels(self.backend.name).inc()
            log.warning("scaling failed", extra={"service_id": row.service_id, "error": str(exc)})
            return decision.active
        if decision.changed and decision.reason is not None:
            woke_at = woken.get(row.service_id)
            if woke_at is not None and row.desired == 0:
                metrics.WAKE_LATENCY.observe(time.monotonic() - woke_at)
            await self.repo.record_scaled(
                row.service_id,
                row.project_id,
                row.desired,
                desired,
                decision.load,
                decision.reason,
                at,
            )
            metrics.SCALE_EVENTS.labels(decision.reason).inc()
            log.info(
                "service scaled",
                extra={
                    "service_id": row.service_id,
                    "from": row.desired,
                    "to": desired,
                    "load": decision.load,
                    "reason": decision.reason,
                },
            )
        metrics.REPLICAS_DESIRED.labels(row.service_id).set(desired)
        return decision.active

    async def _observe_actual(self, rows: Sequence[ScalingRow]) -> None:
        refs = [ServiceRef(r.service_id, r.project_id) for r in rows]
        try:
            actual = await self.backend.actual(refs)
        except ScalerError as exc:
            metrics.SCALER_ERRORS.labels(self.backend.name).inc()
            log.warning("reading replicas failed", extra={"error": str(exc)})
            return
        for row in rows:
            count = actual.get(row.service_id, 0)
            metrics.REPLICAS_ACTUAL.labels(row.service_id).set(count)
            if count != row.actual:
                await self.repo.record_actual(row.service_id, row.project_id, count)
