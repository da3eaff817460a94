"""The five services and nginx as processes, the way ``make up`` runs them, but on ports,
a database, a bucket and a topology prefix of their own: for benchmarks and fault tests
that must measure or kill real processes without touching a running ``make up`` stack.

    async with isolated_stack("bench-e2e") as stack:
        ...  # stack.url is PRELABEL_URL; stack.kill("trigger-router"); stack.restart(...)

With ``own_triton=True`` it also runs a Triton of its own (free ports, its own model
repository), so a test may kill it (``stack.kill("triton")``) without touching anyone
else's models; with ``own_broker=True`` a RabbitMQ node of its own, so a test may restart
the broker (``stack.restart_broker(outage_s)``) without touching anyone else's
connections. Everything it made is removed afterwards: processes, database, bucket, its
own broker's data (queues and exchanges are the services' ephemeral topology).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from common.s3 import delete_bucket, s3_client
from common.testing.servers import free_port
from prelabel_stack.components.base import ProcessComponent, terminate_all
from prelabel_stack.components.proxy import Nginx
from prelabel_stack.components.servers import OwnRabbitMQ, Triton
from prelabel_stack.components.services import Service
from prelabel_stack.config import CONSOLE, SERVICES, StackConfig

FIVE = ("dataset", "trigger-router", "model-serving", "annotation", "billing")
ADMIN_KEY = "isolated-stack-admin-key"


@dataclass
class IsolatedStack:
    """The running processes and where they keep their state."""

    config: StackConfig
    database: str
    bucket: str
    prefix: str
    services: dict[str, Service] = field(default_factory=dict)
    nginx: Nginx | None = None
    triton: Triton | None = None
    """Its own Triton (``own_triton=True``), else None (the machine's is used)."""
    broker: OwnRabbitMQ | None = None
    """Its own RabbitMQ node (``own_broker=True``), else None (the configured one is used)."""

    @property
    def url(self) -> str:
        """``PRELABEL_URL`` (nginx)."""
        return self.config.proxy_url

    @property
    def admin_key(self) -> str:
        """The dataset service's admin key."""
        return self.config.admin_key

    @property
    def dsn(self) -> str:
        """The stack's database (one schema per service, as ``make up`` has them)."""
        return self.config.database_url(self.database)

    @property
    def components(self) -> list[ProcessComponent]:
        """Every process: its own broker and Triton first, then the services, then nginx."""
        return [
            *([self.broker] if self.broker else []),
            *([self.triton] if self.triton else []),
            *self.services.values(),
            *([self.nginx] if self.nginx else []),
        ]

    def component(self, name: str) -> ProcessComponent:
        """Service ``name``, or ``triton`` / ``rabbitmq`` when the stack has its own."""
        if name == "triton" and self.triton is not None:
            return self.triton
        if name == "rabbitmq" and self.broker is not None:
            return self.broker
        return self.services[name]

    def pid(self, name: str) -> int | None:
        """The pid of service ``name`` (or ``triton``); None when it is not running."""
        return self.component(name).tracked_pid()

    async def kill(self, name: str) -> int:
        """``kill -9`` the service's (or its own Triton's) process, not its group: children
        it started, such as the router's workers, live on as they would; return the pid."""
        pid = self.pid(name)
        if pid is None:
            raise RuntimeError(f"{name} is not running")
        os.kill(pid, signal.SIGKILL)
        return pid

    async def restart_broker(self, outage_s: float) -> None:
        """Stop its own RabbitMQ node (every connection drops), wait ``outage_s``, start it
        again on the same data (durable queues and their messages come back) and wait
        until it takes logins."""
        broker = self.broker
        if broker is None:
            raise RuntimeError("this stack uses a shared broker: start it with own_broker=True")
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(outage_s)
        await self.restart(broker.name)

    async def restart(self, name: str) -> None:
        """Start service ``name`` (or its own ``triton`` / ``rabbitmq``) again and wait
        until it is ready."""
        component = self.component(name)
        await asyncio.to_thread(component.launch)
        await asyncio.to_thread(component.wait_ready)


@contextlib.asynccontextmanager
async def isolated_stack(
    label: str,
    *,
    root: Path,
    settings: Mapping[str, Any] | None = None,
    worker_settings: Mapping[str, str] | None = None,
    own_triton: bool = False,
    own_broker: bool = False,
) -> AsyncIterator[IsolatedStack]:
    """Start the five services and nginx (see the module docstring) under ``root``.

    ``settings``: values by settings field for every service (the stack's win otherwise);
    ``worker_settings``: extra ``MODEL_SERVING_*`` variables for the router's workers;
    ``own_triton``: run a Triton of its own instead of using the machine's;
    ``own_broker``: run a RabbitMQ node of its own instead of using the configured one.
    """
    suffix = uuid.uuid4().hex[:10]
    base = StackConfig.from_env()
    config = dataclasses.replace(
        base,
        root=root / f"{label}-{suffix}",
        # The console is not started here; its port is free, so nginx's / answers 502.
        service_ports={s.name: free_port() for s in (*SERVICES, CONSOLE)},
        proxy_port=free_port(),
        admin_key=ADMIN_KEY,
        timeout_s=120.0,
    )
    if own_triton:
        config = dataclasses.replace(
            config,
            triton_http_port=free_port(),
            triton_grpc_port=free_port(),
            triton_metrics_port=free_port(),
            model_repository=config.root / "triton" / "models",
        )
    if own_broker:
        config = dataclasses.replace(config, amqp_port=free_port())
    safe = label.replace("-", "_")
    stack = IsolatedStack(config, f"{safe}_{suffix}", f"{label}-{suffix}", f"{safe}{suffix}.")
    admin = await asyncpg.connect(base.database_url("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{stack.database}"')
    finally:
        await admin.close()
    shared = {
        "database_url": stack.dsn,
        "topology_prefix": stack.prefix,
        "s3_bucket": stack.bucket,
        "ephemeral_topology": "true",
        **(settings or {}),
    }
    # The router's local backend hands the MODEL_SERVING_* variables of its environment
    # to the workers it starts; the environment wins over the stack's values.
    worker = {
        "MODEL_SERVING_DATABASE_URL": stack.dsn,
        "MODEL_SERVING_TOPOLOGY_PREFIX": stack.prefix,
        "MODEL_SERVING_S3_BUCKET": stack.bucket,
        **(
            {
                "MODEL_SERVING_TRITON_HTTP_URL": config.triton_http_url,
                "MODEL_SERVING_TRITON_GRPC_URL": config.triton_grpc_url,
                "MODEL_SERVING_MODEL_REPOSITORY": str(config.model_repository),
            }
            if own_triton
            else {}
        ),
        **(worker_settings or {}),
    }
    saved = {k: os.environ.get(k) for k in worker}
    os.environ.update(worker)
    for path in (config.logs_dir, config.pids_dir):
        path.mkdir(parents=True, exist_ok=True)
    stack.services = {
        s.name: Service(config, s, settings=shared) for s in SERVICES if s.name in FIVE
    }
    stack.nginx = Nginx(config)
    stack.triton = Triton(config) if own_triton else None
    if own_broker:
        stack.broker = OwnRabbitMQ(
            config, name="rabbitmq", port=config.amqp_port, dist_port=free_port()
        )
    try:
        if stack.broker is not None:  # the services connect to it as they start
            await asyncio.to_thread(stack.broker.launch)
            await asyncio.to_thread(stack.broker.wait_ready)
        rest = [c for c in stack.components if c is not stack.broker]
        for component in rest:
            await asyncio.to_thread(component.launch)
        for component in rest:
            await asyncio.to_thread(component.wait_ready)
        yield stack
    finally:
        # The services first, then the servers they use (its own broker and Triton): a
        # service stopping while its broker goes away failed its shutdown.
        servers = [c for c in (stack.broker, stack.triton) if c is not None]
        for group in ([c for c in stack.components if c not in servers], servers):
            running = [(c, pid) for c in group if (pid := c.tracked_pid()) is not None]
            await asyncio.to_thread(terminate_all, running)
        await asyncio.to_thread(_kill_orphaned_workers, stack.prefix)
        if stack.broker is not None:
            shutil.rmtree(stack.broker.home, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        admin = await asyncpg.connect(base.database_url("postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{stack.database}" WITH (FORCE)')
        finally:
            await admin.close()
        async with s3_client(base.s3_endpoint, base.s3_access_key, base.s3_secret_key) as s3:
            with contextlib.suppress(Exception):
                await delete_bucket(s3, stack.bucket)


def _kill_orphaned_workers(prefix: str) -> None:
    """SIGKILL workers of this stack that outlived their router (a test killed it)."""
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if "model_serving_service.worker" not in " ".join(process.cmdline()):
                continue
            if process.environ().get("MODEL_SERVING_TOPOLOGY_PREFIX") == prefix:
                process.kill()
