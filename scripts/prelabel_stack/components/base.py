"""What every component is: a status row, and the two kinds (OS-managed servers and
processes this package runs itself)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prelabel_stack.config import StackConfig, StackError
from prelabel_stack.probes import Probe, port_open
from prelabel_stack.processes import (
    DEFAULT_STOP_GRACE_S,
    STOP_GRACE_S,
    log_tail,
    pid_alive,
    read_pid,
    rotate_log,
    signal_group,
    wait_until,
)
from prelabel_stack.rendering import console


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
