"""Reference-counted loading of models on Triton, shared by every replica, deploy probe
and predict-now call.

A *hold* (a row in ``model_holds``) says "I need this model loaded". The first hold loads
the model, the last one to go unloads it; both run under a per-model PostgreSQL advisory
lock, so two replicas starting together load it once and a replica stopping never unloads
a model another one has just started using.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator

import asyncpg
from tritonclient.utils import InferenceServerException

from model_serving_service.adapters.triton import (
    ModelLoadError,
    TritonControl,
    TritonUnavailableError,
)

log = logging.getLogger(__name__)


def _lock_key(triton_name: str) -> int:
    digest = hashlib.sha256(f"triton-model:{triton_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class ModelHolds:
    """Reference-counted loading of Triton models, shared through PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool, control: TritonControl, *, stale_seconds: float) -> None:
        self.pool = pool
        self.control = control
        self.stale_seconds = stale_seconds

    async def acquire(self, holder_id: str, triton_name: str, kind: str) -> None:
        """Hold ``triton_name`` loaded; load it when nobody held it.

        Raises :class:`ModelLoadError` (the hold is not recorded then).
        """
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(triton_name))
            await conn.execute(
                """INSERT INTO model_holds (holder_id, triton_name, kind) VALUES ($1, $2, $3)
                   ON CONFLICT (holder_id) DO UPDATE SET seen_at = now()""",
                holder_id,
                triton_name,
                kind,
            )
            # Triton reloads a model it already has when asked to load it again: only
            # load when it is not ready.
            try:
                ready = await self.control.is_ready(triton_name)
            except TritonUnavailableError as exc:
                raise ModelLoadError(f"Triton is unreachable: {exc}") from exc
            if not ready:
                log.info("loading model", extra={"model": triton_name, "holder": holder_id})
                await self.control.load(triton_name)

    async def ensure_loaded(self, triton_name: str) -> None:
        """Load again a model that should be loaded but is not (someone unloaded it)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(triton_name))
            if not await self.control.is_ready(triton_name):
                await self.control.load(triton_name)

    async def release(self, holder_id: str) -> bool:
        """Drop a hold; unload the model when it was the last. True when unloaded."""
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
               AND seen_at >= now() - make_interval(secs => $2)""",
            triton_name,
            self.stale_seconds,
        )
        if remaining:
            return False
        log.info("unloading model (no holders left)", extra={"model": triton_name})
        await self.control.unload(triton_name)
        return True

    async def heartbeat(self, holder_id: str) -> None:
        """Keep a hold fresh (a hold not refreshed for ``stale_seconds`` is a dead one)."""
        await self.pool.execute(
            "UPDATE model_holds SET seen_at = now() WHERE holder_id = $1", holder_id
        )

    async def holders(self, triton_name: str) -> list[str]:
        """Live holders of a model."""
        rows = await self.pool.fetch(
            """SELECT holder_id FROM model_holds WHERE triton_name = $1
               AND seen_at >= now() - make_interval(secs => $2) ORDER BY holder_id""",
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
            "DELETE FROM model_holds WHERE seen_at < now() - make_interval(secs => $1)",
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
        await self.acquire(holder, triton_name, kind)
        try:
            yield holder
        finally:
            await self.release(holder)
