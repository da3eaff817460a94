"""Triton: the model repository on disk, model control (HTTP) and inference (async gRPC).

Triton runs with ``--model-control-mode=explicit``: nothing is loaded until asked; which
models must stay loaded is kept in ``repository.holds``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
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


HTTP_UNREACHABLE = (OSError, aiohttp.ClientError)
"""What Triton's HTTP client raises when the server is away: a refused connection is an
``OSError``, but a server that dies mid-request (``ServerDisconnectedError``, a cut
payload) is an ``aiohttp.ClientError`` only."""


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
        except HTTP_UNREACHABLE as exc:
            raise TritonUnavailableError(f"Triton at {self.url}: {_error_text(exc)}") from exc
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
        except HTTP_UNREACHABLE as exc:
            # Not the model's fault (Triton refused the connection, or died while loading
            # it): the caller retries once Triton is back.
            raise TritonUnavailableError(
                f"Triton at {self.url} is unreachable: {_error_text(exc)}"
            ) from exc

    async def unload(self, triton_name: str) -> None:
        """Ask Triton to unload a model (it finishes requests in flight first)."""
        try:
            await self._client.unload_model(triton_name)
        except (InferenceServerException, *HTTP_UNREACHABLE) as exc:
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
