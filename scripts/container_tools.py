"""Install what the compose test needs on a machine without a Docker engine (Debian, root).

    .venv/bin/python scripts/container_tools.py      # what `make compose-test` runs first

Rootful Podman (with runc, catatonit for ``init: true``, netavark and aardvark-dns for the
compose network and its names, iptables for published ports), Debian's docker-compose v1
(driving ``podman system service``; without docker.io, which it only recommends) and
mmdebstrap (the Debian base image). Each package is installed with apt-get only when
missing, without recommends and without starting any daemon; a second run does nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prelabel_stack.config import StackError
from prelabel_stack.processes import apt_install

# In this order: netavark first, so podman's network-stack dependency is netavark (with
# aardvark-dns, names on the compose network) rather than the CNI plugins, and runc before
# podman, which would otherwise pull crun (containers.conf picks runc: crun refuses this
# host's hybrid cgroup layout).
PACKAGES = (
    "netavark",
    "aardvark-dns",
    "runc",
    "catatonit",
    "iptables",
    "podman",
    "docker-compose",
    "mmdebstrap",
)
LOG = Path(__file__).resolve().parents[1] / ".stack" / "logs" / "container-tools.log"


def installed(package: str) -> bool:
    """Whether dpkg has the package installed."""
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0 and done.stdout.strip() == "install ok installed"


def missing() -> list[str]:
    """The packages of PACKAGES not installed yet."""
    return [package for package in PACKAGES if not installed(package)]


def ensure() -> list[str]:
    """Install the missing packages; the ones installed now."""
    todo = missing()
    for package in todo:
        apt_install(package, LOG, recommends=False, start_daemons=False)
    return todo


def main() -> int:
    """Install what is missing; say what was done."""
    try:
        done = ensure()
    except StackError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"container tools: installed {' '.join(done)}" if done else "container tools: present")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
