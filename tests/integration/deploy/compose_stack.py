"""Bring the compose stack up with Podman on a machine without a Docker engine.

Podman's ``system service`` speaks the Docker API on a socket of its own; Debian's
docker-compose (v1) drives it with ``DOCKER_HOST``. Podman 4.3 runs no healthchecks
without systemd, so while compose waits for ``service_healthy`` a thread runs
``podman healthcheck run`` on the stack's containers. The trigger-router gets the same
socket to start worker containers (its ``docker`` scaler backend).

The stack runs as its own compose project, ``prelabel-ci`` (containers, volumes, the
network and the workers' stack label), so it never touches a ``prelabel`` stack on the
same machine, and every published port is a free one on 127.0.0.1, so it never collides
with the local process stack. ``remove_stack`` takes it all away with podman alone (no
socket): teardown runs it, so does the start of the next run after a killed one, and
``make compose-down`` (``python -m tests.integration.deploy.compose_stack down``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket as sockets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CONTAINERS_CONF = REPO / "deploy" / "compose" / "containers.conf"
COMPOSE_FILES = [REPO / "docker-compose.yml", REPO / "deploy" / "compose" / "docker-compose.ci.yml"]
PROJECT = "prelabel-ci"
"""The compose project, network and workers' stack label of the test's stack."""
SERVICE_PID_FILE = REPO / ".stack" / "compose-ci" / "podman-service.pid"
"""The pid of the ``podman system service`` a run started: a killed run's is stopped next."""
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
PROJECT_LABEL = "com.docker.compose.project"
STACK_LABEL = "io.prelabel.stack"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with sockets.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether nothing holds port on 127.0.0.1 (or on every interface)."""
    with sockets.socket() as sock:
        sock.setsockopt(sockets.SOL_SOCKET, sockets.SO_REUSEADDR, 1)  # TIME_WAIT is free
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def missing_tools() -> list[str]:
    """The tools this harness needs that are not installed."""
    return [t for t in ("podman", "docker-compose", "mmdebstrap") if shutil.which(t) is None]


def podman_env(socket: Path | None = None) -> dict[str, str]:
    """The environment for podman and docker-compose."""
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF), "COMPOSE_HTTP_TIMEOUT": "600"}
    if socket is not None:
        env["DOCKER_HOST"] = f"unix://{socket}"
    return env


def _podman(env: dict[str, str], *args: str) -> list[str]:
    done = subprocess.run(["podman", *args], env=env, text=True, capture_output=True, check=False)
    return [line for line in done.stdout.split() if line]


def leftovers(project: str = PROJECT) -> list[str]:
    """What of the project is still there: containers (workers included), its network,
    its volumes."""
    env = podman_env()
    found = [
        *(f"container {n}" for n in _podman(
            env, "ps", "-a", "--filter", f"label={PROJECT_LABEL}={project}",
            "--format", "{{.Names}}")),
        *(f"worker {n}" for n in _podman(
            env, "ps", "-a", "--filter", f"label={STACK_LABEL}={project}",
            "--filter", f"label={WORKER_LABEL}", "--format", "{{.Names}}")),
        *(f"volume {n}" for n in _podman(
            env, "volume", "ls", "-q", "--filter", f"label={PROJECT_LABEL}={project}")),
    ]  # fmt: skip
    if project in _podman(env, "network", "ls", "--format", "{{.Name}}"):
        found.append(f"network {project}")
    return found


def _stop_service_left_by_a_killed_run() -> None:
    try:
        pid = int(SERVICE_PID_FILE.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if cmdline[:3] == [b"podman", b"system", b"service"]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    SERVICE_PID_FILE.unlink(missing_ok=True)


def remove_stack(project: str = PROJECT) -> list[str]:
    """Remove the project's containers, the workers its router started, its network and
    volumes (podman only, no API socket), and a ``podman system service`` a killed run
    left; what is still there afterwards (nothing, normally)."""
    env = podman_env()
    if shutil.which("podman") is None:
        return []
    # The router first, so that it starts no worker while they go.
    for label in (f"{PROJECT_LABEL}={project}", f"{STACK_LABEL}={project}"):
        ids = _podman(env, "ps", "-aq", "--filter", f"label={label}")
        if ids:
            subprocess.run(["podman", "rm", "-f", "-t", "5", *ids], env=env,
                           capture_output=True, check=False)  # fmt: skip
    if project in _podman(env, "network", "ls", "--format", "{{.Name}}"):
        subprocess.run(["podman", "network", "rm", "-f", project], env=env,
                       capture_output=True, check=False)  # fmt: skip
    volumes = _podman(env, "volume", "ls", "-q", "--filter", f"label={PROJECT_LABEL}={project}")
    if volumes:
        subprocess.run(["podman", "volume", "rm", "-f", *volumes], env=env,
                       capture_output=True, check=False)  # fmt: skip
    if project == PROJECT:
        _stop_service_left_by_a_killed_run()
    return leftovers(project)


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
        out = self.podman(
            "ps", "-a", "--filter", f"label={WORKER_LABEL}", "--filter",
            f"label={STACK_LABEL}={PROJECT}", "--format", "{{.Names}}",
        )  # fmt: skip
        return [line for line in out.stdout.split() if line]

    def report(self) -> str:
        """The containers' states and the last log lines of each: printed when the stack
        does not come up."""
        lines = [self.podman("ps", "-a", "--filter", f"label={PROJECT_LABEL}={PROJECT}",
                             check=False).stdout]  # fmt: skip
        for name in _podman(self.env, "ps", "-a", "--filter", f"label={PROJECT_LABEL}={PROJECT}",
                            "--format", "{{.Names}}"):  # fmt: skip
            logs = self.podman("logs", "--tail", "15", name, check=False)
            lines.append(f"--- {name}\n{logs.stdout}{logs.stderr}")
        return "\n".join(lines)


def build_images(env: dict[str, str]) -> None:
    """Every image, CI stand-ins included (cached layers make a rebuild quick)."""
    subprocess.run(
        [str(REPO / "deploy/images/build.sh")], cwd=REPO, env={**env, "CI": "1"}, check=True
    )


def _run_healthchecks(env: dict[str, str], stop: threading.Event) -> None:
    while not stop.is_set():
        names = subprocess.run(
            ["podman", "ps", "--filter", f"label={PROJECT_LABEL}={PROJECT}",
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


KEY_CHECKS = {
    "trigger-router": "/executions", "model-serving": "/models",
    "annotation": "/tasks", "billing": "/budget",
}  # fmt: skip
"""A route per service that checks the caller's key with the dataset service."""


def _status(url: str, headers: dict[str, str] | None = None) -> int | str:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return repr(exc)


def _wait_until_wired(proxy_url: str, timeout: float) -> None:
    """Every service ready (``/readyz``: database, broker, its own dependencies) and
    reaching the dataset service for key checks (an unknown key answered 401, not 503),
    through the proxy: the stack is up, not only its processes."""
    wanted: dict[str, tuple[dict[str, str], int]] = {
        f"{proxy_url}/api/{name}/readyz": ({}, 200)
        for name in ("dataset", *KEY_CHECKS)
    } | {
        f"{proxy_url}/api/{name}{path}": ({"Authorization": "Bearer pk_not-a-key"}, 401)
        for name, path in KEY_CHECKS.items()
    }  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        answers = {url: _status(url, headers) for url, (headers, _) in wanted.items()}
        pending = {url: got for url, got in answers.items() if got != wanted[url][1]}
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the stack is not wired within {timeout} s: {pending}")
        time.sleep(1)


def _env_file(path: Path, ports: dict[str, int], admin_key: str, socket: Path) -> None:
    path.write_text(
        "\n".join(
            [
                f"PRELABEL_STACK={PROJECT}",
                "PRELABEL_PROXY_ADDRESS=127.0.0.1",
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


@contextlib.contextmanager
def compose_stack(
    workdir: Path, *, build: bool = True, keep: bool = False
) -> Iterator[ComposeStack]:
    """Build the images, start the stack, yield it once the proxy answers, tear it down
    (workers, containers, network, volumes) unless ``keep``; the teardown fails when
    anything of the stack, or one of its ports, is left."""
    remove_stack()  # what a killed run left
    socket = workdir / "podman.sock"
    env = podman_env(socket)
    SERVICE_PID_FILE.parent.mkdir(parents=True, exist_ok=True)
    # Its log (Podman 4.3 logs a systemd error per healthcheck) to a file, not the test's.
    service_log = (workdir / "podman-service.log").open("wb")
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket}"],
        env=env, stdout=service_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    SERVICE_PID_FILE.write_text(f"{service.pid}\n")
    stop = threading.Event()
    checker = threading.Thread(target=_run_healthchecks, args=(env, stop), daemon=True)
    admin_key = f"adm_{secrets.token_urlsafe(24)}"
    env_file = workdir / "compose.env"
    stack = ComposeStack(admin_key, env, env_file, {})
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
        # Ports chosen once the (minutes long) build is done, just before they are bound.
        stack.ports.update({name: free_port() for name in HOST_PORTS})
        _env_file(env_file, stack.ports, admin_key, socket)
        checker.start()
        try:
            stack.compose("up", "-d", "--no-build", *SERVICES)
            _wait_for(f"{stack.proxy_url}/healthz", timeout=600)
            _wait_until_wired(stack.proxy_url, timeout=120)
        except (RuntimeError, TimeoutError):
            print(stack.report(), file=sys.stderr)
            raise
        yield stack
    finally:
        stop.set()
        if not keep:
            for name in stack.workers():
                stack.podman("rm", "-f", "-t", "5", name, check=False)
            if env_file.exists():
                stack.compose("down", "-v", "-t", "10", check=False)
            left = remove_stack()
            service.terminate()
            service.wait(30)
            SERVICE_PID_FILE.unlink(missing_ok=True)
            service_log.close()
            taken = [f"port {p}" for p in stack.ports.values() if not port_is_free(p)]
            if left or taken:
                raise RuntimeError(f"the compose stack left {', '.join(left + taken)}")


def main(argv: list[str]) -> int:
    """``down [project ...]``: remove the test's stack (default ``prelabel-ci``)."""
    if not argv or argv[0] != "down":
        print("usage: python -m tests.integration.deploy.compose_stack down [project ...]")
        return 2
    left = [item for project in (argv[1:] or [PROJECT]) for item in remove_stack(project)]
    if left:
        print(f"still there: {', '.join(left)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
