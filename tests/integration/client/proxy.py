"""The real nginx of the stack in front of services served by a test.

:func:`nginx_in_front` renders ``deploy/nginx/templates/prelabel.conf.template`` with
the ports the test's services listen on (``prelabel_stack``'s :class:`Nginx`, the same
component ``make up`` runs) and yields ``PRELABEL_URL``. A service the test does not
serve, or one it wants "stopped", is pointed at a closed port: nginx answers its
routes with 502 as it does for a service that is down behind it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path

from common.testing.servers import free_port
from prelabel_client.endpoints import SERVICES, Service
from prelabel_stack import Nginx, StackConfig
from prelabel_stack.components.base import terminate_all


@dataclasses.dataclass(frozen=True)
class Proxy:
    """A running nginx: its URL and its access log."""

    url: str
    access_log: Path

    def requests(self) -> list[str]:
        """The request lines nginx logged so far (``GET /api/dataset/datasets HTTP/1.1``)."""
        if not self.access_log.exists():
            return []
        lines = []
        for line in self.access_log.read_text().splitlines():
            _, _, rest = line.partition('"')
            lines.append(rest.partition('"')[0])
        return lines


def upstream_url(url: str) -> int:
    """The port of a service URL served on loopback (``http://127.0.0.1:PORT``)."""
    return int(url.rstrip("/").rsplit(":", 1)[1])


@contextlib.contextmanager
def nginx_in_front(root: Path, services: Mapping[Service, str]) -> Iterator[Proxy]:
    """nginx on a free port with ``/api/<service>/`` to each URL of ``services``
    (``http://127.0.0.1:PORT``); a service left out goes to a closed port."""
    ports: dict[str, int] = {
        s: upstream_url(services[s]) if s in services else free_port() for s in SERVICES
    }
    config = dataclasses.replace(
        StackConfig.from_env(),
        root=root,
        service_ports={**StackConfig.from_env().service_ports, **ports},
        proxy_port=free_port(),
        timeout_s=30.0,
    )
    for path in (config.logs_dir, config.pids_dir):
        path.mkdir(parents=True, exist_ok=True)
    nginx = Nginx(config)
    nginx.launch()
    try:
        nginx.wait_ready()
        yield Proxy(config.proxy_url, config.logs_dir / "nginx-access.log")
    finally:
        pid = nginx.tracked_pid()
        if pid is not None:
            terminate_all([(nginx, pid)])
