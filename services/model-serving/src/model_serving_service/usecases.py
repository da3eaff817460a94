"""What the HTTP API does: install catalog models, register BYOM, deploy and undeploy
model services, predict synchronously; plus the background work of the service process
(deploy probes, undeploy drains, expiring dead replicas)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import tarfile
import time
import zipfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from common.contracts import PredictedAnnotation, PredictRequest
from common.ids import new_id
from common.messaging import PoisonMessageError, parse_event
from model_serving_service.adapters.queues import PredictQueues
from model_serving_service.adapters.triton import (
    InferenceError,
    ModelHolds,
    ModelLoadError,
    ModelNotLoadedError,
    ModelRepository,
    TritonInference,
    TritonTimeoutError,
    TritonUnavailableError,
)
from model_serving_service.adapters.triton_config import (
    backend_problems,
    parse_model_config,
    prepare_model_config,
    validate_model_config,
)
from model_serving_service.catalog import CATALOG
from model_serving_service.domain.archives import model_root, safe_member
from model_serving_service.domain.errors import (
    ConflictError,
    InvalidModelError,
    ModelServingError,
    NotFoundError,
    TooLargeError,
)
from model_serving_service.domain.outcomes import failed_event
from model_serving_service.domain.requests import execution_key
from model_serving_service.domain.scaling import Scaling, default_concurrency, merge_scaling
from model_serving_service.domain.specs import MODEL_NAME_RE, SpecOverrides, parse_spec
from model_serving_service.predictor import BadInputError, predict_batch, prepare
from model_serving_service.repository import Model, Outcome, Repository, Service
from model_serving_service.settings import Settings

log = logging.getLogger(__name__)

MAX_ARCHIVE_FILES = 10_000


class UnavailableError(ModelServingError):
    """Triton cannot serve the request right now."""

    status = 503


class GatewayTimeoutError(ModelServingError):
    """The model did not answer within its timeout."""

    status = 504


@dataclass(frozen=True)
class PredictNowResult:
    """Annotations of one synchronous prediction."""

    model: Model
    annotations: list[PredictedAnnotation]
    seconds: float


@dataclass
class ModelServing:
    """The service's use cases over its repository, Triton and the broker."""

    settings: Settings
    repo: Repository
    files: ModelRepository
    holds: ModelHolds
    inference: TritonInference
    queues: PredictQueues
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _busy: set[str] = field(default_factory=set)

    # ------------------------------------------------------------------ models

    async def install(
        self,
        project_id: str,
        catalog_name: str,
        *,
        name: str | None,
        overrides: SpecOverrides,
    ) -> Model:
        """Copy a catalog model into the project (its own id, Triton model and settings)."""
        entry = CATALOG.get(catalog_name)
        if entry is None:
            raise NotFoundError(
                f"catalog has no model {catalog_name!r} (available: {', '.join(sorted(CATALOG))})"
            )
        spec = overrides.apply(entry.spec)
        model_id = new_id("mdl")
        config = entry.triton_config(model_id, spec.max_batch_size)
        await self.files.write(model_id, config, {"1/model.py": entry.model_file})
        return await self._insert(
            project_id=project_id,
            model_id=model_id,
            name=name or entry.name,
            version=entry.version,
            source="catalog",
            catalog_name=entry.name,
            spec_doc=spec.model_dump(mode="json"),
        )

    async def register(
        self,
        project_id: str,
        *,
        name: str,
        version: str,
        archive: bytes,
        spec_doc: Mapping[str, Any],
    ) -> Model:
        """Register a bring-your-own Triton model directory with its output adapter."""
        if not MODEL_NAME_RE.match(name):
            raise InvalidModelError(["name: letters, digits, '.', '_' and '-' (max 100)"])
        if not MODEL_NAME_RE.match(version):
            raise InvalidModelError(["version: letters, digits, '.', '_' and '-' (max 100)"])
        spec = parse_spec(spec_doc)
        members = await asyncio.to_thread(unpack_archive, archive, self.settings.max_unpacked_bytes)
        root = model_root(members)
        relative = {
            PurePosixPath(*path.parts[len(root.parts) :]): data
            for path, data in members.items()
            if path.parts[: len(root.parts)] == root.parts and path != root
        }
        config_text = relative.pop(PurePosixPath("config.pbtxt")).decode("utf-8", errors="replace")
        config = parse_model_config(config_text)
        problems = validate_model_config(config, spec) + backend_problems(config, relative)
        if problems:
            raise InvalidModelError(problems)
        model_id = new_id("mdl")
        await self.files.write(
            model_id,
            prepare_model_config(config, model_id),
            {str(path): data for path, data in relative.items()},
        )
        return await self._insert(
            project_id=project_id,
            model_id=model_id,
            name=name,
            version=version,
            source="byom",
            catalog_name=None,
            spec_doc=spec.model_dump(mode="json"),
        )

    async def _insert(self, *, spec_doc: dict[str, Any], **fields: Any) -> Model:
        spec = parse_spec(spec_doc)
        model = await self.repo.insert_model(triton_name=fields["model_id"], spec=spec, **fields)
        if model is None:
            await self.files.remove(fields["model_id"])
            raise ConflictError(
                f"the project already has a model {fields['name']!r} version "
                f"{fields['version']!r}; choose another name"
            )
        return model

    async def get_model(self, project_id: str, model_id: str) -> Model:
        """A model of the project (404 otherwise)."""
        model = await self.repo.get_model(model_id, project_id)
        if model is None:
            raise NotFoundError(f"model {model_id} not found")
        return model

    async def delete_model(self, project_id: str, model_id: str) -> None:
        """Remove a model no service uses: unload it and delete its directory."""
        model = await self.get_model(project_id, model_id)
        services = await self.repo.model_services_in_use(model.id)
        if services:
            raise ConflictError(f"model {model.id} is deployed by {', '.join(services)}")
        if await self.holds.holders(model.triton_name):
            raise ConflictError(f"model {model.id} is in use on Triton")
        await self.repo.delete_model(model.id)
        await self.holds.control.unload(model.triton_name)
        await self.files.remove(model.triton_name)

    # ------------------------------------------------------------------ services

    async def deploy(
        self, project_id: str, model_id: str, name: str | None, scaling: Mapping[str, Any]
    ) -> Service:
        """Create a model service: record it, declare its queue, check the model loads."""
        model = await self.get_model(project_id, model_id)
        fields = dict(scaling)
        if fields.get("concurrency") is None:
            fields["concurrency"] = default_concurrency(model.spec.max_batch_size)
        settings = merge_scaling(Scaling(), {k: v for k, v in fields.items() if v is not None})
        service_id = new_id("svc")
        await self.queues.declare(service_id)
        service = await self.repo.insert_service(
            service_id=service_id,
            project_id=project_id,
            model_id=model.id,
            name=name or model.name,
            scaling=settings,
        )
        self._spawn(service.id, self._probe(service, model))
        return service

    async def get_service(self, project_id: str, service_id: str) -> Service:
        """A live service of the project (404 otherwise)."""
        service = await self.repo.get_service(service_id, project_id)
        if service is None:
            raise NotFoundError(f"service {service_id} not found")
        return service

    async def patch(self, project_id: str, service_id: str, changes: Mapping[str, Any]) -> Service:
        """Change scaling settings; the router learns them from ``service.deployed.v1``."""
        service = await self.get_service(project_id, service_id)
        if service.status == "undeploying":
            raise ConflictError(f"service {service_id} is being undeployed")
        scaling = merge_scaling(service.scaling, changes)
        updated = await self.repo.set_scaling(service.id, scaling)
        if updated is None:
            raise ConflictError(f"service {service_id} is being undeployed")
        return updated

    async def undeploy(self, project_id: str, service_id: str) -> Service:
        """Start undeploying: drain the queue, tell the router, remove the queue."""
        service = await self.get_service(project_id, service_id)
        moved = await self.repo.set_status(
            service.id, "undeploying", None, allowed_from=("deploying", "ready", "failed")
        )
        if moved is None:
            moved = await self.get_service(project_id, service_id)
        self._spawn(service.id, self._drain(moved))
        return moved

    async def _probe(self, service: Service, model: Model) -> None:
        """Deploy check: the model must load on Triton once."""
        try:
            async with self.holds.held(model.triton_name, "deploy"):
                pass
        except ModelLoadError as exc:
            log.warning("deploy failed", extra={"service_id": service.id, "reason": str(exc)})
            await self.repo.set_status(service.id, "failed", str(exc), allowed_from=("deploying",))
            return
        await self.repo.set_status(service.id, "ready", None, allowed_from=("deploying",))

    async def _drain(self, service: Service) -> None:
        queue = self.queues.queue_name(service.id)
        deadline = time.monotonic() + self.settings.undeploy_drain_seconds
        # 1. Let the replicas finish what is queued.
        while time.monotonic() < deadline:
            depth = await self.queues.depth(queue)
            if depth is None or depth.messages == 0:
                break
            await asyncio.sleep(0.25)
        # 2. The router stops routing and stops the replicas (they drain what they hold).
        await self.repo.set_status(service.id, "undeployed", None, allowed_from=("undeploying",))
        stop_by = time.monotonic() + service.scaling.drain_seconds + 10.0
        while time.monotonic() < stop_by:
            depth = await self.queues.depth(queue)
            if depth is None or depth.consumers == 0:
                break
            await asyncio.sleep(0.25)
        # 3. Whatever is left gets an outcome, then the queue goes.
        failed = await self.queues.drain(queue, lambda body: self._fail_leftover(service, body))
        if failed:
            log.info("failed leftover requests", extra={"service_id": service.id, "count": failed})
        await self.queues.delete(service.id)
        log.info("service undeployed", extra={"service_id": service.id})

    async def _fail_leftover(self, service: Service, body: bytes) -> None:
        try:
            event = parse_event(body, PredictRequest)
        except PoisonMessageError:
            log.warning("dropping an unreadable request of an undeployed service")
            return
        request = event.data
        key = execution_key(request.execution_id, request.attempt)
        outcome = failed_event(
            request,
            key,
            service_id=service.id,
            reason=f"service {service.id} was undeployed before the request ran",
            retryable=False,
        )
        await self.repo.record_outcomes([Outcome(key, outcome)])

    def _spawn(self, service_id: str, work: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background work failed", extra={"service_id": service_id})
            finally:
                self._busy.discard(service_id)

        self._busy.add(service_id)
        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resume(self) -> None:
        """After a restart: finish deploy probes and undeploys left half-done."""
        for service in await self.repo.services_in("deploying"):
            model = await self.repo.get_model(service.model_id)
            if model is not None and service.id not in self._busy:
                self._spawn(service.id, self._probe(service, model))
        for service in await self.repo.services_in("undeploying"):
            if service.id not in self._busy:
                self._spawn(service.id, self._drain(service))

    async def janitor(self) -> None:
        """Forever: expire dead replicas (billing gets their stop), unload unheld models."""
        while True:
            try:
                lost = await self.repo.expire_lost_replicas(self.settings.hold_stale_seconds)
                if lost:
                    log.warning("replicas lost (no heartbeat)", extra={"replicas": lost})
                await self.holds.reconcile(set(await self.repo.all_triton_names()))
            except Exception:
                log.warning("janitor pass failed", exc_info=True)
            await asyncio.sleep(self.settings.janitor_seconds)

    async def close(self) -> None:
        """Cancel background work."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ predict-now

    async def predict_now(
        self, project_id: str, service_id: str, data: bytes, mimetype: str | None
    ) -> PredictNowResult:
        """Run the service's model on one uploaded file, synchronously."""
        service = await self.get_service(project_id, service_id)
        if service.status == "undeploying":
            raise ConflictError(f"service {service_id} is being undeployed")
        model = await self.get_model(project_id, service.model_id)
        if len(data) > self.settings.max_image_bytes:
            raise TooLargeError(f"file is larger than {self.settings.max_image_bytes} bytes")
        try:
            prepared = await prepare(model.spec, data, mimetype)
        except BadInputError as exc:
            raise InvalidModelError([exc.reason]) from exc
        started = time.monotonic()

        async def run() -> list[PredictedAnnotation]:
            annotations = await predict_batch(
                model.spec,
                model.triton_name,
                self.inference,
                [prepared],
                timeout=model.spec.timeout_seconds,
            )
            return annotations[0]

        try:
            try:
                loaded = await self.holds.control.is_ready(model.triton_name)
                if not loaded:
                    raise ModelNotLoadedError(model.triton_name)
                annotations = await run()
            except ModelNotLoadedError:
                # Nobody holds it loaded: hold it for this one call (cold start).
                async with self.holds.held(model.triton_name, "predict-now"):
                    annotations = await run()
        except ModelLoadError as exc:
            raise UnavailableError(f"model could not be loaded: {exc}") from exc
        except TritonUnavailableError as exc:
            raise UnavailableError(f"Triton is unreachable: {exc}") from exc
        except TritonTimeoutError as exc:
            raise GatewayTimeoutError(
                f"timeout: no answer within the model's {model.spec.timeout_seconds:g}s"
            ) from exc
        except InferenceError as exc:
            raise InvalidModelError([f"model error: {exc}"]) from exc
        return PredictNowResult(model, annotations, time.monotonic() - started)


# --------------------------------------------------------------------------- archives


def unpack_archive(archive: bytes, max_unpacked: int) -> dict[PurePosixPath, bytes]:
    """Files of a ``.tar``, ``.tar.gz`` or ``.zip`` archive, checked for unsafe entries."""
    out: dict[PurePosixPath, bytes] = {}
    total = 0

    def add(name: str, read: Callable[[], bytes], size: int) -> None:
        nonlocal total
        if name.startswith("__MACOSX/"):
            return
        path = safe_member(name)
        if path is None:
            raise InvalidModelError([f"unsafe path in archive: {name!r}"])
        total += size
        if total > max_unpacked:
            raise TooLargeError(f"the archive unpacks to more than {max_unpacked} bytes")
        if len(out) >= MAX_ARCHIVE_FILES:
            raise InvalidModelError([f"the archive has more than {MAX_ARCHIVE_FILES} files"])
        out[path] = read()

    if archive[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(archive)) as zf:
                for info in zf.infolist():
                    if info.is_dir():
                        continue
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise InvalidModelError([f"symbolic link in archive: {info.filename!r}"])
                    add(info.filename, lambda info=info: zf.read(info), info.file_size)  # type: ignore[misc]
        except zipfile.BadZipFile as exc:
            raise InvalidModelError([f"the zip archive is damaged: {exc}"]) from exc
        return out
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tf:
            for member in tf:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise InvalidModelError(
                        [
                            f"archive entry {member.name!r} is not a regular file (links and "
                            "devices are refused)"
                        ]
                    )
                handle = tf.extractfile(member)
                assert handle is not None
                add(member.name, handle.read, member.size)
    except tarfile.TarError as exc:
        raise InvalidModelError(
            [f"the upload is neither a zip nor a tar(.gz) archive of a model directory: {exc}"]
        ) from exc
    return out


def parse_spec_form(raw: str) -> dict[str, Any]:
    """The ``spec`` form field: a JSON object."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise InvalidModelError([f"spec is not JSON: {exc}"]) from exc
    if not isinstance(doc, dict):
        raise InvalidModelError(["spec must be a JSON object"])
    return doc
