"""``python scripts/demo.py``: run the job against the local stack and show it."""

from __future__ import annotations

import asyncio
import sys
import time
from decimal import Decimal

import typer
from rich.console import Console
from rich.panel import Panel

from prelabel_demo.flow import DemoFlow
from prelabel_demo.presentation import RichReporter, explore_commands, fail, render_summary
from prelabel_demo.results import DemoOptions, Endpoints, StepFailedError
from prelabel_stack import Stack, StackConfig, render

app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0] if __doc__ else None)


@app.command()
def main(
    images: int = typer.Option(50, min=1, max=297, help="Digits to upload."),
    deadline: float = typer.Option(180.0, min=1, help="Seconds for every prediction to land."),
    cooldown: float = typer.Option(10.0, min=0, help="Idle seconds before scaling to zero."),
    budget: str = typer.Option("5.00", help="The project's automation budget."),
    show_stack: bool = typer.Option(True, help="Print the stack's status table at the end."),
) -> None:
    """Run a pre-labeling job end to end against the running services."""
    console = Console(width=None if sys.stdout.isatty() else 140)
    config = StackConfig.from_env()
    # Everything through the one URL (nginx), as a user of PRELABEL_URL would.
    endpoints = Endpoints.behind(config.proxy_url, config.admin_key)
    options = DemoOptions(
        images=images, deadline_s=deadline, cooldown_s=cooldown, budget=Decimal(budget)
    )
    console.print(
        Panel(
            f"Pre-label {images} handwritten digits the pipeline way: upload -> pipeline "
            f"(Dataset -> Predict on a model service scaled from zero on Triton -> Task) -> "
            f"a browser-style predict on a DQL filter (skipped, then --force) -> review -> "
            f"cost per accepted label.\n"
            f"[dim]PRELABEL_URL={endpoints.proxy_url} (nginx: /api/<service>/ to each service)[/]",
            title="[bold]prelabel demo[/]",
            expand=False,
        )
    )
    started = time.monotonic()
    try:
        result = asyncio.run(DemoFlow(endpoints, options, RichReporter(console)).run())
    except StepFailedError as exc:
        fail(console, exc)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    render_summary(console, result)
    failed = result.executions.get("failed", 0)
    if show_stack:
        console.print()
        render(
            [c.status() for c in Stack(config, with_services=True).components], "what runs where"
        )
    console.print("\n[bold]Explore[/] (copy and paste):")
    for line in explore_commands(endpoints, result):
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    if endpoints.proxy_url:
        console.print(
            f"\n[bold]In a browser[/]: {endpoints.proxy_url}/ (the console: sign in with the "
            "API key above; Datasets, Models, Pipelines, Review, Billing)",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"\n[green]demo finished in {time.monotonic() - started:.0f}s[/]")
    if failed:
        console.print(f"[red]{failed} executions failed[/]")
        raise typer.Exit(1)
