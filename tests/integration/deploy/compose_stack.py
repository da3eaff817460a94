"""Bring the compose stack up with Podman on a machine without a Docker engine.

Podman's ``system service`` speaks the Docker API on a socket of its own; Debian's
docker-compose (v1) drives it with ``DOCKER_HOST``. Podman 4.3 runs no healthchecks
without systemd, so while compose waits for ``service_healthy`` a thread runs
``podman healthcheck run`` on the stack's containers. The trigger-router gets the same
socket to start worker containers (its ``docker`` scaler backend).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket as sockets
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CONTAINERS_CONF = REPO / "deploy" / "compose" / "containers.conf"
COMPOSE_FILES = [REPO / "docker-compose.yml", REPO / "deploy" / "compose" / "docker-compose.ci.yml"]
PROJECT = "prelabel"
SERVICES = [
    "rabbitmq", "postgres", "seaweedfs", "triton", "dataset", "trigger-router",
    "model-serving", "annotation", "billing", "console", "nginx", "prometheus",
]  # fmt: skip
HOST_PORTS = [
    "PRELABEL_PROXY_PORT", "PRELABEL_RABBITMQ_PORT", "PRELABEL_RABBITMQ_MANAGEMENT_PORT",
    "PRELABEL_S3_PORT", "PRELABEL_DATASET_PORT", "PRELABEL_TRIGGER_ROUTER_PORT",
    "PRELABEL_MODEL_SERVING_PORT", "PRELABEL_ANNOTATION_PORT", "PRELABEL_BILLING_PORT",
    "PRELABEL_CONSOLE_PORT", "PRELABEL_PROMETHEUS_PORT", "PRELABEL_GRAFANA_PORT",
]  # fmt: skip
"""Published ports, moved to free ones: the local stack may hold the defaults."""
WORKER_LABEL = "io.prelabel.role=predict-worker"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with sockets.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def missing_tools() -> list[str]:
    """The tools this harness needs that are not installed."""
    return [t for t in ("podman", "docker-compose", "mmdebstrap") if shutil.which(t) is None]


@dataclass
class ComposeStack:
    """A running compose stack: its proxy URL, admin key and environment."""

    admin_key: str
    env: dict[str, str]
    env_file: Path
    ports: dict[str, int]

    @property
    def proxy_url(self) -> str:
        """The one URL (nginx)."""
        return f"http://127.0.0.1:{self.ports['PRELABEL_PROXY_PORT']}"

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run docker-compose against the stack."""
        files = [a for f in COMPOSE_FILES for a in ("-f", str(f))]
        done = subprocess.run(
            ["docker-compose", "-p", PROJECT, *files, "--env-file", str(self.env_file), *args],
            cwd=REPO, env=self.env, check=False, text=True, capture_output=True,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(f"docker-compose {' '.join(args)} failed:\n{done.stderr[-4000:]}")
        return done

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run podman with the stack's containers.conf."""
        return subprocess.run(
            ["podman", *args], env=self.env, check=check, text=True, capture_output=True
        )

    def workers(self) -> list[str]:
        """Names of the worker containers the router started, running or not."""
        out = self.podman("ps", "-a", "--filter", f"label={WORKER_LABEL}", "--format", "{{.Names}}")
        return [line for line in out.stdout.split() if line]


def podman_env(socket: Path) -> dict[str, str]:
    """The environment for podman and docker-compose."""
    return {
        **os.environ,
        "CONTAINERS_CONF": str(CONTAINERS_CONF),
        "DOCKER_HOST": f"unix://{socket}",
        "COMPOSE_HTTP_TIMEOUT": "600",
    }


def build_images(env: dict[str, str]) -> None:
    """Every image, CI stand-ins included (cached layers make a rebuild quick)."""
    subprocess.run(
        [str(REPO / "deploy/images/build.sh")], cwd=REPO, env={**env, "CI": "1"}, check=True
    )


def _run_healthchecks(env: dict[str, str], stop: threading.Event) -> None:
    while not stop.is_set():
        names = subprocess.run(
            ["podman", "ps", "--filter", f"label=com.docker.compose.project={PROJECT}",
             "--format", "{{.Names}}"],
            env=env, text=True, capture_output=True, check=False,
        ).stdout.split()  # fmt: skip
        for name in names:
            subprocess.run(
                ["podman", "healthcheck", "run", name], env=env, capture_output=True, check=False
            )
        stop.wait(2)


def _wait_for(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer 200 within {timeout} s: {last!r}")


@contextlib.contextmanager
def compose_stack(
    workdir: Path, *, build: bool = True, keep: bool = False
) -> Iterator[ComposeStack]:
    """Build the images, start the stack, yield it once the proxy answers, tear it down
    (workers, containers, volumes) unless ``keep``."""
    socket = workdir / "podman.sock"
    env = podman_env(socket)
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket}"], env=env
    )
    stop = threading.Event()
    checker = threading.Thread(target=_run_healthchecks, args=(env, stop), daemon=True)
    admin_key = f"adm_{secrets.token_urlsafe(24)}"
    env_file = workdir / "compose.env"
    ports = {name: free_port() for name in HOST_PORTS}
    env_file.write_text(
        "\n".join(
            [
                *(f"{name}={port}" for name, port in ports.items()),
                f"DATASET_ADMIN_KEY={admin_key}",
                f"PRELABEL_RABBITMQ_PASSWORD={secrets.token_hex(12)}",
                f"PRELABEL_POSTGRES_PASSWORD={secrets.token_hex(12)}",
                f"PRELABEL_S3_SECRET_KEY={secrets.token_hex(12)}",
                f"PRELABEL_GRAFANA_PASSWORD={secrets.token_hex(12)}",
                f"CONSOLE_SESSION_SECRET={secrets.token_urlsafe(32)}",
                f"PRELABEL_ENGINE_SOCKET={socket}",
                "PRELABEL_ENGINE_SOCKET_GID=0",
            ]
        )
        + "\n"
    )
    stack = ComposeStack(admin_key, env, env_file, ports)
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            if time.monotonic() > deadline or service.poll() is not None:
                raise RuntimeError("podman system service did not open its socket")
            time.sleep(0.1)
        # The router (uid 10001, group 0) talks to the engine on this socket.
        socket.chmod(0o660)
        if build:
            build_images(env)
        checker.start()
        stack.compose("up", "-d", "--no-build", *SERVICES)
        _wait_for(f"{stack.proxy_url}/healthz", timeout=600)
        yield stack
    finally:
        stop.set()
        if not keep:
            for name in stack.workers():
                stack.podman("rm", "-f", "-t", "5", name, check=False)
            stack.compose("down", "-v", "-t", "10", check=False)
            service.terminate()
            service.wait(30)
