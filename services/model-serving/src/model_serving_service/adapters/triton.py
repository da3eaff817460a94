"""Triton: the model repository on disk, model control (HTTP) and inference (async gRPC),
and reference-counted loading shared by every replica, deploy probe and predict-now call.

Triton runs with ``--model-control-mode=explicit``: nothing is loaded until asked. A
*hold* (a row in ``model_holds``) says "I need this model loaded". The first hold loads
the model, the last one to go unloads it; both run under a per-model PostgreSQL advisory
lock, so two replicas starting together load it once and a replica stopping never unloads
a model another one has just started using.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shutil
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import tritonclient.grpc.aio as triton_grpc
import tritonclient.http.aio as triton_http
from numpy.typing import NDArray
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from model_serving_service.adapters.triton_config import render_model_config
from model_serving_service.domain.requests import short_triton_reason

log = logging.getLogger(__name__)


class ModelLoadError(Exception):
    """Triton could not load a model; the message is Triton's reason."""


class TritonUnavailableError(Exception):
    """Triton did not answer (connection refused, reset, server shutting down)."""


class TritonTimeoutError(Exception):
    """Triton did not answer within the deadline."""


class ModelNotLoadedError(Exception):
    """Triton answered that the model is not loaded (someone unloaded it)."""


class InferenceError(Exception):
    """Triton ran the model and it failed (bad input for the model, model bug)."""


# --------------------------------------------------------------------------- repository


class ModelRepository:
    """Model directories in Triton's model repository, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, triton_name: str) -> Path:
        """Directory of one model."""
        return self.root / triton_name

    def _write(
        self,
        triton_name: str,
        config: model_config_pb2.ModelConfig,
        files: Mapping[str, bytes | Path],
    ) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # Staged beside the target and renamed: Triton never sees a half-written model.
        staging = self.root / f".staging-{triton_name}-{uuid.uuid4().hex[:8]}"
        try:
            staging.mkdir()
            (staging / "config.pbtxt").write_text(render_model_config(config))
            for relative, content in files.items():
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, Path):
                    shutil.copyfile(content, target)
                else:
                    target.write_bytes(content)
            final = self.path(triton_name)
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    async def write(
        self,
        triton_name: str,
        config: model_config_pb2.ModelConfig,
        files: Mapping[str, bytes | Path],
    ) -> None:
        """Write ``config.pbtxt`` and ``files`` (relative path -> bytes or a file to copy)."""
        await asyncio.to_thread(self._write, triton_name, config, files)

    async def remove(self, triton_name: str) -> None:
        """Delete a model directory (after it was unloaded)."""
        await asyncio.to_thread(shutil.rmtree, self.path(triton_name), True)


# --------------------------------------------------------------------------- control


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, InferenceServerException):
        return str(exc.message() or exc)
    return f"{type(exc).__name__}: {exc}"


class TritonControl:
    """Model control and health over Triton's HTTP API."""

    def __init__(self, http_url: str, *, load_timeout: float) -> None:
        self.url = http_url
        self.load_timeout = load_timeout
        self._client = triton_http.InferenceServerClient(http_url, conn_timeout=load_timeout)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._client.close()

    async def server_ready(self) -> bool:
        """Whether Triton answers and is ready."""
        ready: bool = await self._client.is_server_ready()
        return ready

    async def is_ready(self, triton_name: str) -> bool:
        """Whether ``triton_name`` is loaded and ready."""
        try:
            ready: bool = await self._client.is_model_ready(triton_name)
        except InferenceServerException as exc:
            raise TritonUnavailableError(_error_text(exc)) from exc
        except OSError as exc:
            raise TritonUnavailableError(f"Triton at {self.url}: {exc}") from exc
        return ready

    async def load(self, triton_name: str) -> None:
        """Load (or reload) a model; :class:`ModelLoadError` with Triton's reason."""
        try:
            async with asyncio.timeout(self.load_timeout):
                await self._client.load_model(triton_name)
        except TimeoutError as exc:
            raise ModelLoadError(
                f"timeout: loading {triton_name} took longer than {self.load_timeout:g}s"
            ) from exc
        except InferenceServerException as exc:
            raise ModelLoadError(short_triton_reason(_error_text(exc))) from exc
        except OSError as exc:
            raise ModelLoadError(f"Triton at {self.url} is unreachable: {exc}") from exc

    async def unload(self, triton_name: str) -> None:
        """Ask Triton to unload a model (it finishes requests in flight first)."""
        try:
            await self._client.unload_model(triton_name)
        except (InferenceServerException, OSError) as exc:
            log.warning("unload failed", extra={"model": triton_name, "error": _error_text(exc)})

    async def loaded_models(self) -> set[str]:
        """Names of the models Triton has READY."""
        index: list[dict[str, Any]] = await self._client.get_model_repository_index()
        return {m["name"] for m in index if m.get("state") == "READY"}


# --------------------------------------------------------------------------- inference


class TritonInference:
    """Async gRPC inference; errors classified so callers know whether to retry."""

    def __init__(self, grpc_url: str) -> None:
        self.url = grpc_url
        self._client = triton_grpc.InferenceServerClient(grpc_url)

    async def close(self) -> None:
        """Close the channel."""
        await self._client.close()

    async def infer(
        self,
        triton_name: str,
        tensor: str,
        data: NDArray[Any],
        outputs: list[str],
        *,
        timeout: float,
    ) -> dict[str, NDArray[Any]]:
        """One call with a batch; returns output tensors by name."""
        datatype = (
            "BYTES" if data.dtype == object else ("FP32" if data.dtype == np.float32 else "UINT8")
        )
        item = triton_grpc.InferInput(tensor, list(data.shape), datatype)
        item.set_data_from_numpy(data)
        requested = [triton_grpc.InferRequestedOutput(name) for name in outputs]
        try:
            result = await self._client.infer(
                triton_name, [item], outputs=requested, client_timeout=max(timeout, 0.001)
            )
        except InferenceServerException as exc:
            raise classify(exc) from exc
        return {name: result.as_numpy(name) for name in outputs}


def classify(exc: InferenceServerException) -> Exception:
    """Map a Triton client error onto what the caller should do about it."""
    text = _error_text(exc)
    status = str(exc.status() or "")
    lowered = text.lower()
    if "deadline" in status.lower() or "deadline exceeded" in lowered:
        return TritonTimeoutError(text)
    if "unknown model" in lowered or "is not ready" in lowered or "no available version" in lowered:
        return ModelNotLoadedError(text)
    if "UNAVAILABLE" in status or "failed to connect" in lowered or "connection" in lowered:
        return TritonUnavailableError(text)
    return InferenceError(short_triton_reason(text))


# --------------------------------------------------------------------------- holds


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
