"""Scaler backends behind one interface: ``local`` worker processes or a Kubernetes
Deployment's scale subresource (:mod:`trigger_router_service.adapters.kube`).

The autoscaler decides *how many* replicas a model service should run; a backend
makes it so and reports how many really run. Backends are told desired counts,
never individual replicas, so a backend is free to replace a crashed replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

OTHER_SERVICE_PREFIXES = ("DATASET_", "TRIGGER_ROUTER_", "ANNOTATION_", "BILLING_")
"""Variables of other services that a model-serving worker must not inherit."""
WORKER_SERVICE_ID = "MODEL_SERVING_WORKER_SERVICE_ID"
WORKER_REPLICA_ID = "MODEL_SERVING_WORKER_REPLICA_ID"


class ScalerError(Exception):
    """The backend could not apply a replica count (retried on the next reconcile)."""


@dataclass(frozen=True)
class ServiceRef:
    """The model service a backend scales."""

    service_id: str
    project_id: str


class ScalerBackend(Protocol):
    """What the autoscaler needs from a backend."""

    name: str

    def requested(self, service_id: str) -> int | None:
        """The replica count this backend was last told in this process (``None``: never)."""

    async def scale(self, service: ServiceRef, replicas: int) -> None:
        """Run ``replicas`` replicas of ``service`` (idempotent). Raises :class:`ScalerError`."""

    async def actual(self, services: Sequence[ServiceRef]) -> dict[str, int]:
        """Replicas really running (ready) per service id."""

    async def sync(self) -> None:
        """Repair drift once per reconcile (the local backend restarts crashed replicas)."""

    async def step_down(self) -> None:
        """This router lost the autoscaler's leadership: hand over to the next leader
        (the local backend stops the replicas it started, since only their parent can
        manage them; Kubernetes needs nothing)."""

    async def close(self) -> None:
        """Release resources; the local backend stops its replicas (they drain first)."""


# --------------------------------------------------------------------------- local


def worker_env(
    base: Mapping[str, str], extra: Mapping[str, str], service_id: str, replica_id: str
) -> dict[str, str]:
    """The environment of one local worker process.

    Everything of ``base`` (the router's environment: PATH, every ``MODEL_SERVING_*``
    variable ...) except other services' settings, then ``extra`` (the router's
    ``model_serving_env`` setting), then the worker's service and replica ids.
    """
    env = {k: v for k, v in base.items() if not k.startswith(OTHER_SERVICE_PREFIXES)}
    env.update(extra)
    env[WORKER_SERVICE_ID] = service_id
    env[WORKER_REPLICA_ID] = replica_id
    return env


@dataclass(eq=False)
class LocalReplica:
    """One worker process."""

    replica_id: str
    service_id: str
    process: asyncio.subprocess.Process
    started: float = field(default_factory=time.monotonic)

    @property
    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.returncode is None


STANDBY_CODE = """
import importlib, json, os, runpy, sys, warnings
name = sys.argv[1]
module = importlib.import_module(name)  # the slow part happens before it is needed
line = sys.stdin.readline()
if not line:
    sys.exit(0)
os.environ.clear()
os.environ.update(json.loads(line))
main = getattr(module, "main", None)
if callable(main):
    sys.exit(main())  # what `python -m` runs: `if __name__ == "__main__": sys.exit(main())`
warnings.simplefilter("ignore", RuntimeWarning)
runpy.run_module(name, run_name="__main__", alter_sys=True)
"""
"""A standby replica: imports the worker module, waits for its environment on stdin,
then runs it as ``python -m`` would: its ``main()`` if it has one (model-serving's
worker does), else the module as ``__main__``."""


class LocalScaler:
    """Starts model-serving worker processes on this machine.

    ``scale`` starts missing replicas and stops surplus ones with SIGTERM (the worker
    stops consuming, finishes or requeues what it holds, then exits; SIGKILL after
    ``stop_seconds``). ``sync`` replaces replicas that exited on their own. ``actual``
    counts live processes. Replicas are children of this router process, so only the
    leader that started them manages them; ``close`` stops them all.

    With ``prewarm`` one standby process has already imported the worker module (a
    model-serving worker spends seconds importing before it even starts loading its
    model); a scale-up hands it its environment and starts the next standby, so a cold
    start costs the model load, not the interpreter start.
    """

    name = "local"

    def __init__(
        self,
        *,
        module: str,
        extra_env: Mapping[str, str] | None = None,
        stop_seconds: float = 60.0,
        python: str = sys.executable,
        base_env: Mapping[str, str] | None = None,
        prewarm: bool = False,
    ) -> None:
        self._module = module
        self._extra_env = dict(extra_env or {})
        self._stop_seconds = stop_seconds
        self._python = python
        self._base_env = base_env
        self._requested: dict[str, int] = {}
        self._running: dict[str, list[LocalReplica]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._prewarm = prewarm
        self._standby: asyncio.subprocess.Process | None = None
        self.restarts = 0
        """Replicas that exited without being asked to and were replaced."""

    def requested(self, service_id: str) -> int | None:
        """The count last asked for."""
        return self._requested.get(service_id)

    def replicas(self, service_id: str) -> list[LocalReplica]:
        """The live replicas of a service (tests use this to kill one)."""
        return [r for r in self._running.get(service_id, []) if r.alive]

    async def scale(self, service: ServiceRef, replicas: int) -> None:
        """Converge ``service`` to ``replicas`` worker processes."""
        async with self._lock:
            self._requested[service.service_id] = replicas
            await self._converge(service.service_id)

    async def actual(self, services: Sequence[ServiceRef]) -> dict[str, int]:
        """Live worker processes per service."""
        return {s.service_id: len(self.replicas(s.service_id)) for s in services}

    async def sync(self) -> None:
        """Replace replicas that exited without being asked to; keep a standby ready."""
        async with self._lock:
            for service_id in list(self._requested):
                await self._converge(service_id)
            await self._ensure_standby()

    async def step_down(self) -> None:
        """Stop every replica: the next leader (another process) starts its own."""
        await self.close()

    async def close(self) -> None:
        """Stop every replica and wait for them to drain (bounded by ``stop_seconds``)."""
        async with self._lock:
            for service_id in list(self._requested):
                self._requested[service_id] = 0
                await self._converge(service_id)
            standby, self._standby = self._standby, None
        if standby is not None and standby.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                standby.kill()
            await standby.wait()
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    async def _converge(self, service_id: str) -> None:
        running = self._running.setdefault(service_id, [])
        for replica in [r for r in running if not r.alive]:
            running.remove(replica)
            self.restarts += 1
            log.warning(
                "local replica exited on its own; replacing it",
                extra={
                    "service_id": service_id,
                    "replica_id": replica.replica_id,
                    "returncode": replica.process.returncode,
                },
            )
        wanted = self._requested.get(service_id, 0)
        while len(running) < wanted:
            running.append(await self._spawn(service_id))
        while len(running) > wanted:
            # Newest first: the oldest replicas have warm caches and loaded models.
            replica = running.pop()
            task = asyncio.create_task(self._stop(replica), name=f"stop-{replica.replica_id}")
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    def _base(self) -> Mapping[str, str]:
        return self._base_env if self._base_env is not None else os.environ

    async def _ensure_standby(self) -> None:
        if not self._prewarm or (self._standby is not None and self._standby.returncode is None):
            return
        env = {k: v for k, v in self._base().items() if not k.startswith(OTHER_SERVICE_PREFIXES)}
        try:
            self._standby = await asyncio.create_subprocess_exec(
                self._python,
                "-c",
                STANDBY_CODE,
                self._module,
                env={**env, **self._extra_env},
                stdin=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            log.warning("cannot start a standby replica", extra={"error": str(exc)})
            self._standby = None

    async def _spawn(self, service_id: str) -> LocalReplica:
        replica_id = f"rep_{uuid.uuid4().hex[:16]}"
        env = worker_env(self._base(), self._extra_env, service_id, replica_id)
        standby, self._standby = self._standby, None
        process: asyncio.subprocess.Process | None = None
        if standby is not None and standby.returncode is None and standby.stdin is not None:
            try:
                standby.stdin.write(json.dumps(env).encode() + b"\n")
                await standby.stdin.drain()
                standby.stdin.close()
                process = standby
            except (OSError, ConnectionError):
                process = None
        if process is None:
            try:
                process = await asyncio.create_subprocess_exec(
                    self._python,
                    "-m",
                    self._module,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    # Its own session: a Ctrl-C on the router's terminal must not hit the
                    # workers directly; the router stops them (drain) itself.
                    start_new_session=True,
                )
            except OSError as exc:
                raise ScalerError(f"cannot start {self._module}: {exc}") from exc
        log.info(
            "local replica started",
            extra={
                "service_id": service_id,
                "replica_id": replica_id,
                "pid": process.pid,
                "prewarmed": process is standby,
            },
        )
        await self._ensure_standby()
        return LocalReplica(replica_id, service_id, process)

    async def _stop(self, replica: LocalReplica) -> None:
        if not replica.alive:
            return
        log.info("stopping local replica", extra={"replica_id": replica.replica_id})
        with contextlib.suppress(ProcessLookupError):
            replica.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(replica.process.wait(), self._stop_seconds)
        except TimeoutError:
            log.warning("local replica did not drain in time; killing it")
            with contextlib.suppress(ProcessLookupError):
                replica.process.kill()
            await replica.process.wait()
