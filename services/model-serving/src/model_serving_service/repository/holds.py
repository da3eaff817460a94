"""Reference-counted loading of models on Triton, shared by every replica, deploy probe
and predict-now call.

A *hold* (a row in ``model_holds``) says "I need this model loaded". The first hold loads
the model, the last one to go unloads it; both run under a per-model PostgreSQL advisory
lock, so two replicas starting together load it once and a replica stopping never unloads
a model another one has just started using.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator

import asyncpg
from tritonclient.utils import InferenceServerException

from model_serving_service.adapters.triton import ModelLoadError, TritonControl

log = logging.getLogger(__name__)


def _lock_key(triton_name: str) -> int:
    digest = hashlib.sha256(f"triton-model:{triton_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class ModelHolds:
    """Reference-counted loading of Triton models, shared through PostgreSQL.

    A hold is recorded (committed, stamped with the clock, not a transaction's start)
    before its model is loaded, and renewed while the holder lives (:meth:`heartbeat`), a
    load that takes minutes included: a hold whose load outlasted ``stale_seconds`` used
    to be born stale, and the janitor unloaded its model every pass.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        control: TritonControl,
        *,
        stale_seconds: float,
        heartbeat_seconds: float | None = None,
    ) -> None:
        self.pool = pool
        self.control = control
        self.stale_seconds = stale_seconds
        self.heartbeat_seconds = heartbeat_seconds or max(stale_seconds / 4, 0.05)
        """How often :meth:`held` renews its hold."""
        self._mine: dict[str, tuple[str, str]] = {}
        """Holds of this process: holder -> (model, kind), so a heartbeat can record a
        hold again that the janitor dropped (the database was away longer than
        ``stale_seconds``)."""

    async def acquire(self, holder_id: str, triton_name: str, kind: str) -> None:
        """Hold ``triton_name`` loaded; load it when it is not.

        Raises :class:`ModelLoadError` when Triton cannot load it (the hold is dropped),
        :class:`TritonUnavailableError` when Triton does not answer (the hold stays: the
        caller retries, and its heartbeat keeps the hold fresh meanwhile).
        """
        self._mine[holder_id] = (triton_name, kind)
        await self._stamp(self.pool, holder_id, triton_name, kind)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(triton_name))
                # Triton reloads a model it already has when asked to load it again: only
                # load when it is not ready.
                if not await self.control.is_ready(triton_name):
                    log.info("loading model", extra={"model": triton_name, "holder": holder_id})
                    await self.control.load(triton_name)
        except ModelLoadError:
            self._mine.pop(holder_id, None)
            await self.pool.execute("DELETE FROM model_holds WHERE holder_id = $1", holder_id)
            raise
        # Fresh from now on, however long the load took.
        await self._stamp(self.pool, holder_id, triton_name, kind)

    @staticmethod
    async def _stamp(
        conn: asyncpg.Pool | asyncpg.Connection, holder_id: str, triton_name: str, kind: str
    ) -> None:
        await conn.execute(
            """INSERT INTO model_holds (holder_id, triton_name, kind, acquired_at, seen_at)
               VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp())
               ON CONFLICT (holder_id) DO UPDATE SET seen_at = clock_timestamp()""",
            holder_id,
            triton_name,
            kind,
        )

    async def ensure_loaded(self, triton_name: str) -> None:
        """Load again a model that should be loaded but is not (someone unloaded it)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(triton_name))
            if not await self.control.is_ready(triton_name):
                await self.control.load(triton_name)

    async def release(self, holder_id: str) -> bool:
        """Drop a hold; unload the model when it was the last. True when unloaded."""
        self._mine.pop(holder_id, None)
        triton_name = await self.pool.fetchval(
            "SELECT triton_name FROM model_holds WHERE holder_id = $1", holder_id
        )
        if triton_name is None:
            return False
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(triton_name))
            await conn.execute("DELETE FROM model_holds WHERE holder_id = $1", holder_id)
            return await self._unload_if_unheld(conn, triton_name)

    async def _unload_if_unheld(self, conn: asyncpg.Connection, triton_name: str) -> bool:
        remaining = await conn.fetchval(
            """SELECT count(*) FROM model_holds WHERE triton_name = $1
               AND seen_at >= clock_timestamp() - make_interval(secs => $2)""",
            triton_name,
            self.stale_seconds,
        )
        if remaining:
            return False
        log.info("unloading model (no holders left)", extra={"model": triton_name})
        await self.control.unload(triton_name)
        return True

    async def heartbeat(self, holder_id: str) -> None:
        """Keep a hold fresh (a hold not refreshed for ``stale_seconds`` is a dead one);
        record it again if the janitor dropped it meanwhile."""
        mine = self._mine.get(holder_id)
        if mine is None:
            await self.pool.execute(
                "UPDATE model_holds SET seen_at = clock_timestamp() WHERE holder_id = $1",
                holder_id,
            )
            return
        await self._stamp(self.pool, holder_id, *mine)

    async def holders(self, triton_name: str) -> list[str]:
        """Live holders of a model."""
        rows = await self.pool.fetch(
            """SELECT holder_id FROM model_holds WHERE triton_name = $1
               AND seen_at >= clock_timestamp() - make_interval(secs => $2)
               ORDER BY holder_id""",
            triton_name,
            self.stale_seconds,
        )
        return [r["holder_id"] for r in rows]

    async def reconcile(self, triton_names: set[str]) -> list[str]:
        """Drop stale holds and unload loaded models of ``triton_names`` nobody holds.

        Covers replicas killed without draining and loads that finished after their
        caller gave up. Returns the models unloaded.
        """
        await self.pool.execute(
            """DELETE FROM model_holds
               WHERE seen_at < clock_timestamp() - make_interval(secs => $1)""",
            self.stale_seconds,
        )
        try:
            loaded = await self.control.loaded_models() & triton_names
        except (InferenceServerException, OSError) as exc:
            log.warning("cannot list Triton's models", extra={"error": str(exc)})
            return []
        unloaded = []
        for name in sorted(loaded):
            async with self.pool.acquire() as conn, conn.transaction():
                got = await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _lock_key(name))
                if got and await self._unload_if_unheld(conn, name):
                    unloaded.append(name)
        return unloaded

    @contextlib.asynccontextmanager
    async def held(self, triton_name: str, kind: str) -> AsyncIterator[str]:
        """Hold a model for the duration of a block (deploy probes, predict-now)."""
        holder = f"{kind}:{uuid.uuid4().hex}"

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.heartbeat_seconds)
                try:
                    await self.heartbeat(holder)
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("renewing a hold failed", extra={"error": str(exc)})

        renewing = asyncio.create_task(renew(), name=f"hold-{holder}")
        try:
            await self.acquire(holder, triton_name, kind)
            yield holder
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)
            await self.release(holder)
