"""The demo on a terminal: steps, an upload bar, a live view, the summary and what to try."""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from prelabel_demo.reporting import Reporter
from prelabel_demo.results import BATCH_FILTER, DemoResult, Endpoints, Snapshot, StepFailedError
from prelabel_stack import StackConfig


class RichReporter(Reporter):
    """Steps, an upload bar and a live view of the pipeline on a rich console."""

    STEPS = 8

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._upload_task: Any = None
        self._live: Live | None = None
        self._last_line = ""
        self._last_print = 0.0
        self._scale_status: Any = None

    def step(self, number: int, title: str) -> None:
        self.console.print(f"\n[bold cyan]\\[{number}/{self.STEPS}][/] [bold]{title}[/]")

    def done(self, message: str) -> None:
        self.console.print(f"  [green]✓[/] {message}")

    def upload_started(self, total: int) -> None:
        self._progress = Progress(
            TextColumn("  uploading"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=self.console,
        )
        self._upload_task = self._progress.add_task("", total=total)
        self._progress.start()

    def upload_advanced(self, name: str, status: str) -> None:
        if self._progress is not None:
            self._progress.update(self._upload_task, advance=1, description=f"{name} {status}")

    def upload_finished(self) -> None:
        if self._progress is not None:
            self._progress.update(self._upload_task, description="")
            self._progress.stop()
            self._progress = None

    def watch(self, snapshot: Snapshot) -> None:
        if not self.console.is_terminal:
            # Logs and `make` output: a line when something changed, at most every 2 s.
            line = _watch_line(snapshot)
            if line != self._last_line and time.monotonic() - self._last_print >= 2.0:
                self.console.print(f"  {line}", highlight=False)
                self._last_line, self._last_print = line, time.monotonic()
            return
        if self._live is None:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        self._live.update(_watch_view(snapshot))

    def watch_finished(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        elif self._last_line:
            self._last_line = ""

    def scaling(self, desired: int, actual: int, running: int, waited_s: float) -> None:
        message = (
            f"waiting for the cooldown: replicas desired {desired}, running {actual} "
            f"({waited_s:.0f}s)"
        )
        if not self.console.is_terminal:
            if time.monotonic() - self._last_print >= 5.0:
                self.console.print(f"  {message}", highlight=False)
                self._last_print = time.monotonic()
            return
        if self._scale_status is None:
            self._scale_status = self.console.status(message)
            self._scale_status.start()
        self._scale_status.update(message)
        if desired == actual == running == 0:
            self._scale_status.stop()
            self._scale_status = None

    def close(self) -> None:
        self.upload_finished()
        self.watch_finished()
        if self._scale_status is not None:
            self._scale_status.stop()
            self._scale_status = None


def _watch_line(s: Snapshot) -> str:
    e = s.executions
    return (
        f"{s.elapsed_s:5.1f}s executions {s.total}/{s.uploaded}: "
        f"queued {e.get('queued', 0)}, in-progress {e.get('in-progress', 0)}, "
        f"success {e.get('success', 0)}, failed {e.get('failed', 0)} | replicas "
        f"{s.actual_replicas}/{s.desired_replicas} | annotations {s.annotations} | "
        f"task {s.task_items} ({s.pending_review} pending review)"
    )


def _watch_view(s: Snapshot) -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    e = s.executions
    statuses = ", ".join(f"{k} {v}" for k, v in e.items() if v) or "none yet"
    bar_width = 30
    done = int(bar_width * s.finished / s.uploaded) if s.uploaded else 0
    table.add_row(
        "executions",
        f"[green]{'█' * done}[/][dim]{'░' * (bar_width - done)}[/] "
        f"{s.finished}/{s.uploaded} finished ({statuses})",
    )
    replicas = f"{s.actual_replicas} running, {s.desired_replicas} wanted"
    if s.actual_replicas == 0 and s.desired_replicas > 0:
        replicas += " [yellow](cold start: worker starting, model loading)[/]"
    table.add_row("replicas", replicas)
    table.add_row("annotations", f"{s.annotations} stored")
    table.add_row("task", f"{s.task_items} items, {s.pending_review} pending review")
    return Panel(table, title=f"pre-labeling ({s.elapsed_s:.1f}s)", expand=False)


def render_summary(console: Console, r: DemoResult) -> None:
    """The results table."""
    table = Table(title="prelabel demo results", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()

    def seconds(value: float | None) -> str:
        return f"{value:.2f} s" if value is not None else "n/a"

    table.add_row("items uploaded", f"{r.uploaded} in {r.upload_s:.1f} s")
    table.add_row(
        "executions",
        f"{r.executions.get('success', 0)} success, {r.executions.get('failed', 0)} failed "
        f"(all finished {seconds(r.all_done_s)} after the upload began)",
    )
    table.add_row(
        "cold start",
        f"{seconds(r.cold_start_s)} queued -> started for the first execution "
        f"({_plural(r.cold_start_executions, 'execution')} waited for it); replicas "
        f"{r.replicas_at_deploy} -> {r.max_replicas_seen} -> 0",
    )
    table.add_row("first prediction", f"{seconds(r.first_prediction_s)} after the first queueing")
    through = r.pipeline_executions.get("success", 0)
    table.add_row(
        "pipeline",
        f"{through} items through Dataset -> Predict -> Task ({r.pipeline_executions})",
    )
    table.add_row(
        "browser-style predict",
        f"{r.batch_items} items on the filter: {r.batch_skipped} skipped without --force "
        f"(already predicted by this model version); with --force "
        f"{r.forced.get('success', 0)} predicted again, {r.forced.get('failed', 0)} failed",
    )
    accuracy = f"{r.accuracy:.1%}" if r.accuracy is not None else "n/a"
    wrong = ", ".join(f"{truth}->{label}" for _, truth, label in r.confusions[:8])
    table.add_row(
        "accuracy vs truth",
        f"{accuracy} ({r.correct}/{r.compared})" + (f"; mistakes {wrong}" if wrong else ""),
    )
    counts = r.task_progress.get("counts", {})
    table.add_row(
        "task",
        f"{r.task_progress.get('total', 0)} items: "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + f" ({r.task_progress.get('done_fraction', 0.0):.0%} reviewed)",
    )
    rate = r.acceptance_rate
    table.add_row(
        "acceptance rate",
        (f"{rate:.0%}" if rate is not None else "n/a")
        + f" (approved {len(r.review.approved)}, corrected {len(r.review.corrected)})",
    )
    table.add_row(
        "billing",
        f"{r.runtime_seconds:.1f} replica-seconds, cost {r.cost}, {r.predictions} predictions; "
        f"budget {r.budget.get('budget')} spent {r.budget.get('spent')} "
        f"remaining {r.budget.get('remaining')}",
    )
    usage = r.model_usage
    if usage:
        per_label = usage.get("cost_per_accepted_label")
        share = usage.get("auto_accepted_share")
        table.add_row(
            "cost per accepted label",
            f"{per_label if per_label is not None else 'n/a'} (cost {usage.get('cost')} / "
            f"{usage.get('accepted_unchanged')} accepted unchanged; auto-accepted "
            + (f"{share:.0%}" if share is not None else "n/a")
            + ")",
        )
    table.add_row("scale to zero", f"{seconds(r.scaled_to_zero_s)} after the last prediction")
    console.print()
    console.print(table)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def explore_commands(endpoints: Endpoints, r: DemoResult) -> list[str]:
    """Copy-paste ``prelabel`` commands to look around what the demo made (one URL)."""
    key = shlex.quote(r.api_key)
    url = endpoints.proxy_url or endpoints.dataset
    dataset = shlex.quote(r.dataset_name)
    batch_filter = shlex.quote(json.dumps(BATCH_FILTER))
    return [
        f"export PRELABEL_URL={shlex.quote(url)} PRELABEL_API_KEY={key}",
        f".venv/bin/prelabel items list --dataset {dataset} --limit 10",
        f".venv/bin/prelabel pipelines status {r.pipeline_id}",
        f".venv/bin/prelabel pipelines executions {r.pipeline_id}",
        f".venv/bin/prelabel services show {r.service_id}",
        f".venv/bin/prelabel predict {r.service_id} -d {dataset} -f {batch_filter}",
        f".venv/bin/prelabel predict {r.service_id} -d {dataset} -f {batch_filter} --force",
        f".venv/bin/prelabel executions list --service {r.service_id}",
        f".venv/bin/prelabel tasks progress {r.task_id}",
        f".venv/bin/prelabel tasks review {r.task_id}",
        f".venv/bin/prelabel export --task {r.task_id} --format jsonl | head",
        f".venv/bin/prelabel billing usage --service {r.service_id}",
        ".venv/bin/prelabel billing models",
        ".venv/bin/prelabel billing budget",
    ]


def fail(console: Console, exc: StepFailedError) -> None:
    """The failed step, the service's answer and where the logs are."""
    body = f"\n\n[bold]service answer:[/]\n{exc.body}" if exc.body else ""
    logs = StackConfig.from_env().logs_dir
    console.print(
        Panel(
            f"[bold]{exc.step}[/] failed: {exc.message}{body}\n\n"
            f"[dim]service logs: {logs}/<service>.log; `make status` shows what runs[/]",
            title="[red]prelabel demo failed[/]",
            border_style="red",
            expand=False,
        ),
        highlight=False,
    )
