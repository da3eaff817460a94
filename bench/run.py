"""Run the benchmarks and print the results table.

Usage: ``python -m bench.run [names...]`` runs every benchmark (or the named
ones) in order; ``--list`` shows what there is. A benchmark is any module in
the ``bench`` package with ``async def run() -> None``; it may set
``ORDER: int`` (lower runs first, default 100; ties by name) so that the
ceilings other benchmarks compare against are measured first, and
``TIMEOUT_S: float`` (default 300) to bound it.

The store is reset at the start, so the table shows this run only. The exit
status is non-zero only when a benchmark crashed or timed out; missed targets
are listed after the table but do not fail the run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import pkgutil
import shutil
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from rich.console import Console

import bench
from bench import results

DEFAULT_ORDER = 100
DEFAULT_TIMEOUT_S = 300.0
# Modules of the harness itself, never benchmarks.
_NOT_BENCHMARKS = frozenset({"results", "run", "settings", "__main__"})


@dataclass(frozen=True)
class Benchmark:
    """A discovered benchmark module."""

    name: str
    run: Callable[[], Awaitable[None]]
    order: int
    timeout_s: float
    doc: str


def discover() -> list[Benchmark]:
    """Every benchmark module in the ``bench`` package, in run order."""
    found: list[Benchmark] = []
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name in _NOT_BENCHMARKS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        run = getattr(module, "run", None)
        if run is None or not inspect.iscoroutinefunction(run):
            continue
        doc = (module.__doc__ or "").strip().splitlines()
        found.append(
            Benchmark(
                name=info.name,
                run=run,
                order=int(getattr(module, "ORDER", DEFAULT_ORDER)),
                timeout_s=float(getattr(module, "TIMEOUT_S", DEFAULT_TIMEOUT_S)),
                doc=doc[0] if doc else "",
            )
        )
    return sorted(found, key=lambda b: (b.order, b.name))


async def run_all(selected: Sequence[Benchmark], console: Console) -> list[str]:
    """Run ``selected`` one after another; return the names of those that crashed."""
    crashed: list[str] = []
    for benchmark in selected:
        console.rule(f"[bold]{benchmark.name}[/bold] {benchmark.doc}")
        started = time.monotonic()
        try:
            async with asyncio.timeout(benchmark.timeout_s):
                await benchmark.run()
        except Exception:
            # One broken benchmark must not hide the figures of the others.
            crashed.append(benchmark.name)
            console.print(f"[bold red]{benchmark.name} crashed[/bold red]")
            console.print(traceback.format_exc(), markup=False, highlight=False)
        else:
            console.print(f"{benchmark.name} done in {time.monotonic() - started:.1f} s")
    return crashed


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)

    # Piped output (make bench | tee) gets a wide table rather than rich's 80 columns.
    console = Console(width=shutil.get_terminal_size((160, 24)).columns)
    available = discover()
    if args.list:
        for benchmark in available:
            console.print(f"{benchmark.name:<20} {benchmark.doc}", highlight=False)
        return 0

    by_name = {benchmark.name: benchmark for benchmark in available}
    unknown = [name for name in args.names if name not in by_name]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(by_name)}")
    wanted = set(args.names)
    selected = [b for b in available if not wanted or b.name in wanted]

    results.reset()
    crashed = asyncio.run(run_all(selected, console))

    recorded = results.load()
    console.print(results.render_table(recorded))
    console.print(f"results: {results.results_path()}", highlight=False)
    for missed in results.missed_targets(recorded):
        console.print(
            f"[bold red]MISSED TARGET[/bold red] {missed.name}: ratio {missed.ratio:.2f} "
            f"vs target {missed.target_ratio:.2f} (baseline {missed.baseline})",
            highlight=False,
        )
    if crashed:
        console.print(f"[bold red]crashed:[/bold red] {', '.join(crashed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
