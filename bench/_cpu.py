"""CPU accounting of the end-to-end benchmark: which process is which part of the system,
CPU seconds per part between two snapshots, and the per-item figures recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psutil

from bench import results
from prelabel_stack import SERVICES
from prelabel_stack.isolated import FIVE

if TYPE_CHECKING:
    from prelabel_stack.isolated import IsolatedStack

PACKAGES = {s.package: s.name for s in SERVICES}
SERVERS = ("rabbitmq", "postgresql", "seaweedfs", "triton")


def _role(process: psutil.Process, database: str, root: str) -> str | None:
    """Which part of the system ``process`` is (None: not ours to count). ``root``: the
    stack's directory, which its nginx master names in its command line (its workers'
    titles name nothing, so they are known by their parent)."""
    try:
        name = process.name()
        cmdline = process.cmdline()
        if name == "nginx":
            parent = process.parent()
            master = " ".join(cmdline) + " " + " ".join(parent.cmdline() if parent else [])
            return "nginx" if root in master else None
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    text = " ".join(cmdline)
    if "model_serving_service.worker" in text:
        return "model-serving worker"
    for package, service in PACKAGES.items():
        if f"-m {package}" in text:
            return service
    if name == "postgres" or text.startswith("postgres:"):
        # Only the backends serving the bench database (their title names it).
        return "postgresql" if f" {database} " in f" {text} " else None
    if name == "beam.smp":
        return "rabbitmq"
    if name == "weed":
        return "seaweedfs"
    if name.startswith("tritonserver") or "triton_python_backend_stub" in text:
        return "triton"
    return None


def cpu_seconds(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0.0
    return float(times.user + times.system + times.children_user + times.children_system)


def cpu_snapshot(stack: IsolatedStack) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of every process that is part of the system, by pid."""
    snapshot: dict[int, tuple[str, float]] = {}
    root = str(stack.config.root)
    for process in psutil.process_iter():
        role = _role(process, stack.database, root)
        if role is not None:
            snapshot[process.pid] = (role, cpu_seconds(process))
    return snapshot


def cpu_spent(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds per role between two snapshots (a process started in between counts
    from zero; one that ended in between is lost, and is rare here: the worker is warm)."""
    spent: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        start = before.get(pid, (role, 0.0))[1]
        spent[role] = spent.get(role, 0.0) + max(seconds - start, 0.0)
    return spent


def record_cpu(
    prefix: str,
    cpu: dict[str, float],
    items: int,
    plain_cpu: float,
    plain_servers: dict[str, float],
) -> None:
    platform_roles = {*FIVE, "model-serving worker", "nginx"}
    platform = sum(v for k, v in cpu.items() if k in platform_roles)
    servers = sum(v for k, v in cpu.items() if k in SERVERS)
    plain_ms = plain_cpu / items * 1000
    results.record(f"{prefix}_cpu.plain_loop", plain_ms, "CPU ms/item")
    results.record(
        f"{prefix}_cpu.platform", platform / items * 1000, "CPU ms/item",
        f"{prefix}_cpu.plain_loop", plain_ms,
    )  # fmt: skip
    plain_servers_ms = sum(plain_servers.values()) / items * 1000
    results.record(f"{prefix}_cpu.plain_loop_servers", plain_servers_ms, "CPU ms/item")
    results.record(
        f"{prefix}_cpu.servers", servers / items * 1000, "CPU ms/item",
        f"{prefix}_cpu.plain_loop_servers", plain_servers_ms,
    )  # fmt: skip
    for role, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        name = f"{prefix}_cpu.{role.replace(' ', '_')}"
        if role not in SERVERS:
            results.record(name, seconds / items * 1000, "CPU ms/item")
            continue
        # Each server next to what it spent on the plain loop's same items.
        plain_role = f"{prefix}_cpu.plain_loop_{role}"
        plain_role_ms = plain_servers.get(role, 0.0) / items * 1000
        results.record(plain_role, plain_role_ms, "CPU ms/item")
        results.record(
            name, seconds / items * 1000, "CPU ms/item", plain_role,
            plain_role_ms if plain_role_ms > 0 else None,
        )  # fmt: skip
