"""nginx, the one URL: ``/api/<service>/`` to each service and ``/`` to the web console
(Debian's ``nginx`` package).

The site is ``deploy/nginx/templates/prelabel.conf.template``, the same file the nginx
image renders in docker-compose; here it is rendered into ``.stack/nginx/`` with the
stack's ports and the limits of the services' own settings, inside a main config of
its own (pid, temp paths and logs under ``.stack/``), and run in the foreground as a
process of the stack.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from prelabel_stack.components.base import ProcessComponent
from prelabel_stack.components.services import Service
from prelabel_stack.config import (
    CONSOLE,
    REPO_ROOT,
    SERVICES,
    ServiceSpec,
    StackConfig,
    StackError,
)
from prelabel_stack.probes import Probe, http_status
from prelabel_stack.processes import apt_install

TEMPLATE = REPO_ROOT / "deploy" / "nginx" / "templates" / "prelabel.conf.template"
FORM_OVERHEAD_BYTES = 1024 * 1024
"""Room for a multipart form's boundaries and fields around a file at the service's limit:
the service's own check (with its own message) is what an upload near the limit meets."""
JSON_MAX_BODY_BYTES = 10 * 1024 * 1024
"""Bodies of services without uploads (the largest: a predict request naming 10,000 ids)."""
READ_TIMEOUT_S = 120
"""Longest wait for a service's answer (exports of large tasks included)."""
SEND_TIMEOUT_S = 120
"""Longest pause while passing a request body on to a service."""
_NAME = re.compile(r"\$\{([A-Z0-9_]+)\}")


def variable(spec: ServiceSpec, what: str) -> str:
    """A template variable of one service: ``PRELABEL_MODEL_SERVING_UPSTREAM``."""
    return f"PRELABEL_{spec.name.upper().replace('-', '_')}_{what}"


def console_max_body() -> int:
    """The most the console's forms send: a bring-your-own model archive (the console's
    own limit, which it checks with its own message) plus the form around it."""
    from console_service.pages.models import MAX_ARCHIVE_BYTES

    return MAX_ARCHIVE_BYTES + FORM_OVERHEAD_BYTES


def site_values(
    config: StackConfig,
    *,
    listen: str | None = None,
    upstream: Callable[[ServiceSpec, int], str] | None = None,
) -> dict[str, str]:
    """The template's variables: where the services are, and their limits.

    ``listen``/``upstream`` default to the local stack's loopback addresses; compose
    gives ``8090`` and ``<service>:<port>``. The web console (``PRELABEL_CONSOLE_*``) is
    one of the upstreams, served at ``/``.
    """
    services = {spec.name: Service(config, spec) for spec in SERVICES}
    dataset = services["dataset"].settings()
    serving = services["model-serving"].settings()
    values = {
        "PRELABEL_PROXY_LISTEN": listen or f"127.0.0.1:{config.proxy_port}",
        "PRELABEL_JSON_MAX_BODY": str(JSON_MAX_BODY_BYTES),
        "PRELABEL_DATASET_MAX_BODY": str(dataset.max_upload_bytes + FORM_OVERHEAD_BYTES),
        "PRELABEL_MODEL_SERVING_MAX_BODY": str(
            max(serving.max_archive_bytes, serving.max_image_bytes) + FORM_OVERHEAD_BYTES
        ),
        "PRELABEL_CONSOLE_MAX_BODY": str(console_max_body()),
        "PRELABEL_READ_TIMEOUT_S": str(READ_TIMEOUT_S),
        "PRELABEL_SEND_TIMEOUT_S": str(SEND_TIMEOUT_S),
        # A deploy check or a predict-now on a cold model waits for Triton's load; an
        # undeploy for the queue to drain.
        "PRELABEL_MODEL_SERVING_READ_TIMEOUT_S": str(
            max(
                READ_TIMEOUT_S,
                math.ceil(max(serving.load_timeout_seconds, serving.undeploy_drain_seconds)) + 30,
            )
        ),
    }
    for spec in (*SERVICES, CONSOLE):
        # A config made for the five services alone (a bench's nginx in front of one of
        # them) still renders: the console's upstream is then its default port.
        port = config.service_ports.get(spec.name, spec.default_port)
        address = upstream(spec, port) if upstream else f"127.0.0.1:{port}"
        values[variable(spec, "UPSTREAM")] = address
    return values


def render_template(template: str, values: Mapping[str, str]) -> str:
    """``${NAME}`` replaced as the nginx image's envsubst does; unknown names fail."""
    missing = sorted({m for m in _NAME.findall(template) if m not in values})
    if missing:
        raise StackError(f"no value for {', '.join(missing)} in {TEMPLATE.name}")
    return _NAME.sub(lambda m: values[m.group(1)], template)


class Nginx(ProcessComponent):
    """nginx in the foreground with the stack's own config (never the system's)."""

    name = "nginx"
    cmdline_token = "nginx"
    default_timeout_s = 30.0

    @property
    def url(self) -> str:
        """The one URL (``PRELABEL_URL``)."""
        return self.config.proxy_url

    @property
    def port(self) -> int:
        """The listening port."""
        return self.config.proxy_port

    @property
    def directory(self) -> Path:
        """``.stack/nginx``: configs, pid and temp files."""
        return self.config.root / "nginx"

    @property
    def main_config(self) -> Path:
        """``.stack/nginx/nginx.conf``."""
        return self.directory / "nginx.conf"

    def probe(self) -> Probe:
        """The proxy's own ``/healthz`` answers 200."""
        code = http_status(f"{self.url}/healthz")
        if code == 200:
            return Probe(True)
        return Probe(False, "no answer" if code is None else f"/healthz HTTP {code}")

    def binary(self) -> str | None:
        """The nginx binary (``/usr/sbin`` is off a non-root PATH)."""
        return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")

    def write_config(self) -> bool:
        """Render the site and the main config; whether either changed."""
        site = render_template(TEMPLATE.read_text(), site_values(self.config))
        d = self.directory
        temp = d / "temp"
        for kind in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (temp / kind).mkdir(parents=True, exist_ok=True)
        main = (
            "# written by scripts/prelabel_stack: the local stack's nginx, nothing of the system's\n"
            "worker_processes 2;\n"
            f"pid {d / 'nginx.pid'};\n"
            "error_log stderr warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            "    default_type application/octet-stream;\n"
            f"    access_log {self.config.logs_dir / 'nginx-access.log'};\n"
            "    sendfile on;\n"
            "    keepalive_timeout 65s;\n"
            f"    client_body_temp_path {temp / 'body'};\n"
            f"    proxy_temp_path {temp / 'proxy'};\n"
            f"    fastcgi_temp_path {temp / 'fastcgi'};\n"
            f"    uwsgi_temp_path {temp / 'uwsgi'};\n"
            f"    scgi_temp_path {temp / 'scgi'};\n"
            f"    include {d / 'prelabel.conf'};\n"
            "}\n"
        )
        changed = False
        for path, text in ((d / "prelabel.conf", site), (self.main_config, main)):
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                changed = True
        return changed

    def _base_command(self) -> list[str]:
        binary = self.binary()
        if binary is None:
            raise StackError("nginx is not installed (apt-get install nginx)")
        return [binary, "-e", "stderr", "-p", str(self.directory), "-c", str(self.main_config)]

    def check_config(self) -> None:
        """``nginx -t``: a bad config fails here with nginx's own words."""
        done = subprocess.run(
            [*self._base_command(), "-t", "-q"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise StackError(f"nginx rejects {self.main_config}:\n{done.stderr.strip()}")

    def prepare(self) -> None:
        """Install nginx (as root, with apt-get) when missing; render and check the config."""
        if self.binary() is None:
            apt_install("nginx", self.log_path)
            if self.binary() is None:
                raise StackError("apt-get installed nginx but no nginx binary is on PATH")
        self.config.logs_dir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self.check_config()

    def command(self) -> list[str]:
        """``nginx -p .stack/nginx -c .stack/nginx/nginx.conf`` in the foreground."""
        return [*self._base_command(), "-g", "daemon off;"]

    def cwd(self) -> Path:
        """``.stack/nginx``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory

    def launch(self) -> str:
        """Start nginx; one already running with another config reloads the new one."""
        pid = self.tracked_pid()
        if pid is not None and self.binary() is not None and self.probe().ok:
            if self.write_config():
                self.check_config()
                os.kill(pid, signal.SIGHUP)
                return "running (config reloaded)"
            return "running"
        return super().launch()
