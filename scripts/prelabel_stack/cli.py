"""``python scripts/stack.py up|down|status``."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

from prelabel_stack.components.monitoring import PrometheusTools
from prelabel_stack.config import StackConfig, StackError
from prelabel_stack.rendering import console, err_console, render
from prelabel_stack.stack import Stack


def print_one_url(config: StackConfig) -> None:
    """The proxy's URL, as clients (SDK, CLI) take it."""
    console.print(
        f"one URL for every client: [bold]PRELABEL_URL={config.proxy_url}[/] "
        "(/api/<service>/, e.g. /api/dataset/docs)",
        highlight=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``up``, ``down`` or ``status``."""
    parser = argparse.ArgumentParser(
        description="The prelabel local stack as real processes (see the module docstring)."
    )
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument(
        "--services",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include the five prelabel services (default: yes)",
    )
    parser.add_argument("--json", action="store_true", help="status: print JSON, not a table")
    parser.add_argument(
        "--test-tools",
        action="store_true",
        help="up: also install the tools the tests use (promtool, prometheus; `make test`)",
    )
    parser.add_argument(
        "--test-broker",
        action="store_true",
        help="up: also start an empty RabbitMQ node of our own for the tests "
        "(PRELABEL_TEST_AMQP_PORT, default 5682; `make test`)",
    )
    args = parser.parse_args(argv)
    try:
        config = StackConfig.from_env()
        stack = Stack(
            config,
            with_services=args.services,
            test_broker=args.command == "up" and args.test_broker,
        )
        if args.command == "up":
            started = time.monotonic()
            for path in (config.logs_dir, config.pids_dir):
                path.mkdir(parents=True, exist_ok=True)
            rows = stack.up()
            render(rows, f"prelabel stack up ({time.monotonic() - started:.1f}s)")
            if args.test_tools:
                tools = PrometheusTools(config)
                console.print(f"promtool, prometheus (Debian {tools.name}): {tools.ensure()}")
            if args.services:
                print_one_url(config)
                if config.admin_key_is_default:
                    console.print(f"dataset admin key (development default): {config.admin_key}")
            return 0
        if args.command == "down":
            render(stack.down(), "prelabel stack down")
            return 0
        rows = [c.status() for c in stack.components]
        ok = all(r.ok for r in rows)
        if args.json:
            payload = {
                "ok": ok,
                "components": [r.as_dict() for r in rows],
                "endpoints": config.endpoints(),
            }
            print(json.dumps(payload, indent=2))
        else:
            render(rows, "prelabel stack status")
            if args.services:
                print_one_url(config)
        return 0 if ok else 1
    except StackError as exc:
        err_console.print(f"[bold red]stack {args.command} failed:[/] {exc}", highlight=False)
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
