"""RabbitMQ and PostgreSQL: used where they run, started (and installed, as root) where not."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path

from prelabel_stack.components.base import Component, Row
from prelabel_stack.config import DATABASES, StackError
from prelabel_stack.probes import Probe, port_open, probe_amqp, probe_postgres, run_async
from prelabel_stack.processes import apt_install, log_tail, wait_until
from prelabel_stack.rendering import console


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

    def restart(self) -> None:
        """``pg_ctlcluster ... restart -m fast``: every connection drops, the server is down
        for the restart's length; for fault tests."""
        self._run_logged([*self._ctl("restart"), "--", "-m", "fast"])
        self.wait_ready()

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

        created = run_async(ensure(), 30.0)
        if created:
            console.print(f"created database(s): {', '.join(created)}")
