"""Container scaler backend: starts and stops predict-worker containers through a Docker
Engine API (Docker itself, or Podman's ``podman system service``), as docker-compose runs
the stack.

Each replica is one container of the worker image (deploy/images/worker.Dockerfile) on
the compose network, labelled with its service and replica ids and the stack it belongs
to. The engine holds the state, not this process: a new autoscaler leader lists the
labelled containers and adopts them, and a router restart leaves them running, as the
Kubernetes backend leaves its Deployments.

Access to the engine's socket is root-equivalent on that host: give it to the router only
(docker-compose.yml mounts it there and nowhere else).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from trigger_router_service.adapters.scalers import (
    WORKER_REPLICA_ID,
    WORKER_SERVICE_ID,
    ScalerError,
    ServiceRef,
)

log = logging.getLogger(__name__)

API = "/v1.41"
"""Docker Engine API version: Docker 20.10+ and Podman 4's compatibility API speak it."""
ROLE_LABEL = "io.prelabel.role"
STACK_LABEL = "io.prelabel.stack"
SERVICE_LABEL = "io.prelabel.service-id"
PROJECT_LABEL = "io.prelabel.project-id"
REPLICA_LABEL = "io.prelabel.replica-id"
ROLE = "predict-worker"
WORKER_ENV_PREFIX = "MODEL_SERVING_"
WORKER_ALIAS = "model-serving-worker"
"""Network alias of every worker container: DNS lists the running ones (Prometheus
finds them with ``dns_sd_configs``)."""


def worker_environment(
    base: Mapping[str, str], extra: Mapping[str, str], service_id: str, replica_id: str
) -> list[str]:
    """``KEY=value`` lines of one worker container: the router's ``MODEL_SERVING_*``
    variables (nothing else of the router's own environment: the worker image has its
    own PATH and Python), then ``extra``, then the replica's ids."""
    env = {k: v for k, v in base.items() if k.startswith(WORKER_ENV_PREFIX)}
    env.update(extra)
    env[WORKER_SERVICE_ID] = service_id
    env[WORKER_REPLICA_ID] = replica_id
    return [f"{k}={v}" for k, v in sorted(env.items())]


def container_name(stack: str, service_id: str, replica_id: str) -> str:
    """A readable, unique container name (``[a-zA-Z0-9][a-zA-Z0-9_.-]*``)."""
    return f"{stack}-worker-{service_id}-{replica_id}".lower()


@dataclass(frozen=True)
class WorkerContainer:
    """One worker container as the engine lists it."""

    id: str
    service_id: str
    state: str
    created: int

    @property
    def running(self) -> bool:
        """Created or running: counts as a replica (``exited``/``dead`` do not)."""
        return self.state in {"created", "running", "restarting"}


class ContainerScaler:
    """Converges each model service to N worker containers.

    ``scale`` creates and starts missing containers, and stops surplus ones (newest
    first) with the engine's stop (SIGTERM, the worker drains, SIGKILL after
    ``stop_seconds``), then removes them. ``sync`` removes containers that exited on
    their own and replaces them. ``actual`` counts running containers not being stopped.
    """

    name = "docker"

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        image: str,
        stack: str,
        network: str | None,
        base_env: Mapping[str, str],
        extra_env: Mapping[str, str] | None = None,
        stop_seconds: float = 60.0,
    ) -> None:
        self._http = client
        self._image = image
        self._stack = stack
        self._network = network
        self._base_env = dict(base_env)
        self._extra_env = dict(extra_env or {})
        self._stop_seconds = stop_seconds
        self._requested: dict[str, int] = {}
        self._stopping: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._projects: dict[str, str] = {}
        self.restarts = 0
        """Containers that exited without being asked to and were replaced."""

    @classmethod
    def connect(cls, url: str, **kwargs: Any) -> ContainerScaler:
        """``unix:///run/podman/podman.sock`` (or ``/var/run/docker.sock``) or ``http://host:port``."""
        if url.startswith("unix://"):
            transport = httpx.AsyncHTTPTransport(uds=url.removeprefix("unix://"))
            client = httpx.AsyncClient(transport=transport, base_url="http://engine", timeout=30)
        else:
            client = httpx.AsyncClient(base_url=url, timeout=30)
        return cls(client, **kwargs)

    # ------------------------------------------------------------------ interface

    def requested(self, service_id: str) -> int | None:
        """The count last asked for in this process."""
        return self._requested.get(service_id)

    async def scale(self, service: ServiceRef, replicas: int) -> None:
        """Converge ``service`` to ``replicas`` containers."""
        async with self._lock:
            self._projects[service.service_id] = service.project_id
            await self._converge(service.service_id, replicas, await self._list())
            self._requested[service.service_id] = replicas

    async def actual(self, services: Sequence[ServiceRef]) -> dict[str, int]:
        """Running containers per service (those being stopped excluded)."""
        counts = dict.fromkeys((s.service_id for s in services), 0)
        for c in await self._list():
            if c.service_id in counts and c.running and c.id not in self._stopping:
                counts[c.service_id] += 1
        return counts

    async def sync(self) -> None:
        """Replace containers that exited on their own."""
        async with self._lock:
            containers = await self._list()
            for service_id, wanted in list(self._requested.items()):
                await self._converge(service_id, wanted, containers)

    async def step_down(self) -> None:
        """Forget the counts: the containers stay, the next leader adopts them."""
        self._requested.clear()

    async def close(self) -> None:
        """Wait for the stops in progress, then close the connection; running
        containers keep running (a restarted router adopts them)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()

    # ------------------------------------------------------------------ engine calls

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, API + path, **kwargs)
        except httpx.HTTPError as exc:
            raise ScalerError(f"container engine unreachable: {exc!r}") from exc
        if response.status_code >= 400 and response.status_code != 404:
            raise ScalerError(
                f"container engine: {method} {path} answered {response.status_code}: "
                f"{response.text[:300]}"
            )
        return response

    async def _list(self) -> list[WorkerContainer]:
        filters = {"label": [f"{ROLE_LABEL}={ROLE}", f"{STACK_LABEL}={self._stack}"]}
        response = await self._call(
            "GET", "/containers/json", params={"all": "true", "filters": json.dumps(filters)}
        )
        result = []
        for item in response.json() or []:
            labels = item.get("Labels") or {}
            # Filter again: an engine that ignored the filter must not hand us others'.
            if labels.get(ROLE_LABEL) != ROLE or labels.get(STACK_LABEL) != self._stack:
                continue
            result.append(
                WorkerContainer(
                    id=str(item["Id"]),
                    service_id=str(labels.get(SERVICE_LABEL, "")),
                    state=str(item.get("State", "")).lower(),
                    created=int(item.get("Created") or 0),
                )
            )
        return result

    async def _converge(
        self, service_id: str, wanted: int, containers: Sequence[WorkerContainer]
    ) -> None:
        mine = [c for c in containers if c.service_id == service_id and c.id not in self._stopping]
        for dead in [c for c in mine if not c.running]:
            if self._requested.get(service_id, 0) > 0:
                self.restarts += 1
                log.warning(
                    "worker container exited on its own; replacing it",
                    extra={"service_id": service_id, "container": dead.id[:12]},
                )
            await self._call("DELETE", f"/containers/{dead.id}", params={"force": "true"})
        running = sorted((c for c in mine if c.running), key=lambda c: c.created)
        for _ in range(wanted - len(running)):
            await self._start(service_id)
        # Newest first: the oldest replicas have warm caches and loaded models.
        for surplus in running[wanted:][::-1] if wanted < len(running) else []:
            self._stopping.add(surplus.id)
            task = asyncio.create_task(self._stop(surplus.id), name=f"stop-{surplus.id[:12]}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _start(self, service_id: str) -> None:
        replica_id = f"rep_{uuid.uuid4().hex[:16]}"
        body: dict[str, Any] = {
            "Image": self._image,
            "Env": worker_environment(self._base_env, self._extra_env, service_id, replica_id),
            "Labels": {
                ROLE_LABEL: ROLE,
                STACK_LABEL: self._stack,
                SERVICE_LABEL: service_id,
                PROJECT_LABEL: self._projects.get(service_id, ""),
                REPLICA_LABEL: replica_id,
            },
            "StopTimeout": int(self._stop_seconds),
            # An init as PID 1 forwards SIGTERM, so the worker drains before it exits.
            "HostConfig": {"Init": True, "RestartPolicy": {"Name": "no"}},
        }
        if self._network:
            body["HostConfig"]["NetworkMode"] = self._network
            body["NetworkingConfig"] = {
                "EndpointsConfig": {self._network: {"Aliases": [WORKER_ALIAS]}}
            }
        name = container_name(self._stack, service_id, replica_id)
        created = await self._call("POST", "/containers/create", params={"name": name}, json=body)
        if created.status_code == 404:
            raise ScalerError(f"worker image {self._image!r} not found by the container engine")
        container_id = str(created.json()["Id"])
        started = await self._call("POST", f"/containers/{container_id}/start")
        if started.status_code == 404:
            raise ScalerError(f"worker container {name} vanished before it started")
        log.info(
            "worker container started",
            extra={"service_id": service_id, "replica_id": replica_id, "container": name},
        )

    async def _stop(self, container_id: str) -> None:
        try:
            # The engine waits up to t seconds after SIGTERM before SIGKILL; the HTTP
            # call lasts as long, so its timeout must be longer.
            await self._call(
                "POST",
                f"/containers/{container_id}/stop",
                params={"t": str(int(self._stop_seconds))},
                timeout=self._stop_seconds + 30,
            )
            await self._call("DELETE", f"/containers/{container_id}", params={"force": "true"})
            log.info("worker container stopped", extra={"container": container_id[:12]})
        except ScalerError as exc:
            log.warning(
                "stopping a worker container failed",
                extra={"container": container_id[:12], "error": str(exc)},
            )
        finally:
            self._stopping.discard(container_id)
