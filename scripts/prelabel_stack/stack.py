"""The components in start order: ``up`` and ``down``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prelabel_stack.components.base import Component, ProcessComponent, Row, terminate_all
from prelabel_stack.components.proxy import Nginx
from prelabel_stack.components.servers import OwnRabbitMQ, SeaweedFS, Triton
from prelabel_stack.components.services import Service
from prelabel_stack.components.system import PostgreSQL, RabbitMQ, SystemComponent
from prelabel_stack.config import CONSOLE, SERVICES, StackConfig


@dataclass
class Stack:
    """The components in start order."""

    config: StackConfig
    with_services: bool
    test_broker: bool = False
    """Also a RabbitMQ node of our own for the test suite (``make test``), started empty."""
    system: list[SystemComponent] = field(init=False)
    servers: list[ProcessComponent] = field(init=False)
    broker: OwnRabbitMQ = field(init=False)
    """The test suite's own node (``.stack/test-broker``)."""
    services: list[ProcessComponent] = field(init=False)
    """The five services, the web console and nginx in front of them (the one URL)."""

    def __post_init__(self) -> None:
        c = self.config
        self.system = [RabbitMQ(c), PostgreSQL(c)]
        self.servers = [SeaweedFS(c), Triton(c)]
        self.broker = OwnRabbitMQ.for_tests(c)
        if self.test_broker or self.broker.tracked_pid() is not None:
            self.servers.append(self.broker)  # `down` stops the one a `make test` left
        self.services = (
            [*(Service(c, s) for s in (*SERVICES, CONSOLE)), Nginx(c)] if self.with_services else []
        )

    @property
    def components(self) -> list[Component]:
        """All selected components, in start order."""
        return [*self.system, *self.servers, *self.services]

    def up(self) -> list[Row]:
        """Bring everything up; return the table rows with what was done."""
        actions: dict[str, str] = {}
        if self.test_broker:
            # Empty at every `make test`: nothing a previous run left (queues, messages)
            # carries over.
            if (pid := self.broker.tracked_pid()) is not None:
                terminate_all([(self.broker, pid)])
            self.broker.reset()
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
