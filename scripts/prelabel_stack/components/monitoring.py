"""Prometheus's tools for the tests: ``promtool`` and the ``prometheus`` server binary
(Debian's ``prometheus`` package), installed by ``up --test-tools`` (what ``make test``
runs) the way nginx is: with apt-get, as root, when missing.

Nothing here runs a server. The package ships a system service listening on :9090; it is
installed without its maintainer scripts starting it, and on a host booted with systemd
the unit is disabled again, so nothing of it keeps a port. Tests start their own
``prometheus`` on a free port with a data directory of their own.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from prelabel_stack.config import StackConfig, StackError
from prelabel_stack.processes import apt_install

PACKAGE = "prometheus"
SBIN = "/usr/sbin:/usr/local/sbin"


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=SBIN)


def promtool() -> str | None:
    """The ``promtool`` binary, if installed."""
    return _which("promtool")


def prometheus() -> str | None:
    """The ``prometheus`` server binary, if installed."""
    return _which("prometheus")


class PrometheusTools:
    """``promtool`` and ``prometheus`` on this machine (a tool, not a process of the stack)."""

    name = "prometheus-tools"

    def __init__(self, config: StackConfig) -> None:
        self.config = config

    @property
    def log_path(self) -> Path:
        """``.stack/logs/prometheus-tools.log``: the apt-get output."""
        return self.config.logs_dir / f"{self.name}.log"

    def installed(self) -> bool:
        """Whether both binaries are there."""
        return promtool() is not None and prometheus() is not None

    def ensure(self) -> str:
        """Install the package when a binary is missing; what was done."""
        if self.installed():
            return "installed"
        apt_install(PACKAGE, self.log_path, recommends=False, start_daemons=False)
        self._keep_the_system_service_off()
        if not self.installed():
            raise StackError(f"apt-get installed {PACKAGE} but promtool/prometheus are not on PATH")
        return "installed now"

    @staticmethod
    def _keep_the_system_service_off() -> None:
        # policy-rc.d kept it from starting; on a systemd host the unit was still enabled
        # for the next boot.
        systemctl = shutil.which("systemctl")
        if systemctl and Path("/run/systemd/system").is_dir():
            subprocess.run(
                [systemctl, "disable", "--now", "prometheus.service"],
                capture_output=True,
                timeout=60,
                check=False,
            )
