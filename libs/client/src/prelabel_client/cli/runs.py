"""Predict now on a selection, and the executions ledger."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from prelabel_client.cli.context import INTERRUPTED, State, fail, show
from prelabel_client.cli.data import filter_of
from prelabel_client.cli.output import (
    Column,
    Format,
    OutputOption,
    emit,
    err_console,
    fields,
    info,
    table,
)
from prelabel_client.errors import ExitCode
from prelabel_client.models import EXECUTION_STATUSES, Batch, Execution, ExecutionPage
from prelabel_client.sdk import Prelabel

T = TypeVar("T")

executions_app = typer.Typer(
    help="The executions ledger: list, watch, rerun, cancel.", no_args_is_help=True
)

UNFINISHED = ("created", "queued", "in-progress", "waiting-for-budget")
STATUS_STYLE = {
    "success": "green",
    "failed": "red",
    "cancelled": "yellow",
    "waiting-for-budget": "magenta",
    "in-progress": "cyan",
    "skipped": "dim",
}
BATCH_COUNTS = (*EXECUTION_STATUSES, "skipped")
"""A batch's counts: executions per status, and the items already predicted, skipped."""

EXECUTION_COLUMNS: builtins.list[Column] = [
    ("id", lambda e: e.id),
    ("status", lambda e: e.status),
    ("item", lambda e: e.item_id),
    ("service", lambda e: e.service_id),
    ("trigger/batch", lambda e: e.trigger_id or e.batch_id),
    ("attempts", lambda e: e.attempts),
    ("cold start", lambda e: e.cold_start),
    ("created", lambda e: e.created_at),
    ("error", lambda e: e.error),
]


def pause(seconds: float) -> None:
    """The wait between two polls (a seam for tests of Ctrl-C)."""
    time.sleep(seconds)


class Session:
    """One client on one event loop for a command that polls between blocking waits."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.runner = asyncio.Runner()
        self.client: Prelabel | None = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.client is not None:
                self.runner.run(self.client.aclose())
        finally:
            self.runner.close()

    def run(self, work: Callable[[Prelabel], Coroutine[Any, Any, T]]) -> T:
        """``work(client)`` on this session's loop."""
        if self.client is None:
            settings = self.state.settings()

            async def build() -> Prelabel:
                return Prelabel.from_settings(settings)

            self.client = self.runner.run(build())
        client = self.client
        return self.runner.run(work(client))


def counts_text(counts: dict[str, int]) -> str:
    """``success 3 · failed 1 · queued 6 · skipped 2`` (statuses with a count only)."""
    parts = []
    for status in BATCH_COUNTS:
        if counts.get(status):
            style = STATUS_STYLE.get(status)
            text = f"{status} {counts[status]}"
            parts.append(f"[{style}]{text}[/{style}]" if style else text)
    return " · ".join(parts) or "nothing yet"


def _batch_table(batch: Batch) -> Any:
    pairs: builtins.list[tuple[str, Any]] = [("batch", batch.id), ("service", batch.service_id)]
    pairs += [("items", batch.item_count), ("finished", batch.finished)]
    pairs += [(status, batch.counts.get(status, 0)) for status in BATCH_COUNTS]
    pairs += [("forced", batch.force)]
    return fields(f"batch {batch.id}", pairs)


def watch_batch(
    session: Session, batch: Batch, *, show: bool, poll_s: float, timeout_s: float | None
) -> tuple[Batch, str]:
    """Poll the batch with a live bar until it is done; Ctrl-C asks whether to cancel.

    Answers the last batch and how the watch ended: ``done``, ``cancelled`` or ``detached``.
    """
    started = time.monotonic()
    batch_id = batch.id
    progress = Progress(
        TextColumn("predict"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("left"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[counts]}"),
        console=err_console,
        disable=not show,
    )
    with progress:
        bar = progress.add_task(
            "predict", total=batch.item_count, rate="0.0 items/s", counts=counts_text(batch.counts)
        )
        while True:
            try:
                elapsed = time.monotonic() - started
                rate = batch.finished / elapsed if elapsed > 0 else 0.0
                progress.update(
                    bar, completed=batch.finished, rate=f"{rate:.1f} items/s",
                    counts=counts_text(batch.counts),
                )  # fmt: skip
                if batch.done:
                    return batch, "done"
                if timeout_s is not None and elapsed > timeout_s:
                    raise TimeoutError(
                        f"batch {batch.id} not done after {timeout_s:g} s "
                        f"({batch.finished}/{batch.item_count}); it keeps running: "
                        f"prelabel executions watch --batch {batch.id}"
                    )
                pause(poll_s)
                batch = session.run(lambda c: c.batches.get(batch_id))
            except KeyboardInterrupt:
                progress.stop()
                cancel = typer.confirm(
                    f"\ncancel batch {batch.id}? (no: stop watching, it keeps running)",
                    default=False,
                    err=True,
                )
                if cancel:
                    return session.run(lambda c: c.batches.cancel(batch_id)), "cancelled"
                return batch, "detached"


def predict(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Model service id.", show_default=False)],
    item_ids: Annotated[
        builtins.list[str] | None, typer.Argument(help="Item ids (or --dataset and --filter).")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", help="Dataset name or id.", show_default=False)
    ] = None,
    filter_text: Annotated[
        str | None,
        typer.Option("--filter", "-f", help='DQL filter over the dataset: \'{"dir": "/a/**"}\'.'),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the batch to its end.")] = True,
    timeout: Annotated[
        float | None, typer.Option(min=1, help="Give up watching after this many seconds.")
    ] = None,
    poll: Annotated[float, typer.Option(min=0.05, help="Seconds between polls.")] = 0.5,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Predict again the items this model version already predicted."
        ),
    ] = False,
    output: OutputOption = Format.table,
) -> None:
    """Run a model service now on items by id, or on a dataset's items matching a filter.

    Items this model version already predicted successfully (by a trigger, a batch or a
    pipeline) are skipped and counted as skipped; --force predicts them again. A live
    bar shows counts per status, items/s and time left; Ctrl-C asks whether to cancel
    the batch. Exit 8 when some executions failed, 130 when interrupted.

    Example: prelabel predict svc_01H... -d photos --filter '{"metadata.user.camera": "a7"}'
    """
    state = State.of(ctx)
    if bool(item_ids) == (dataset is not None):
        raise fail("give item ids, or --dataset (with an optional --filter)")
    if filter_text is not None and dataset is None:
        raise fail("--filter goes with --dataset")
    query = filter_of(filter_text)

    def body() -> tuple[Batch, str]:
        with Session(state) as session:

            async def start(client: Prelabel) -> Batch:
                if item_ids:
                    return await client.batches.predict(service, item_ids=item_ids, force=force)
                assert dataset is not None
                found = await client.datasets.resolve(dataset)
                return await client.batches.predict(
                    service, dataset_id=found.id, filter=query, force=force
                )

            batch = session.run(start)
            if output is Format.table:
                skipped = (
                    f" ({batch.skipped} already predicted by this model version, skipped;"
                    " --force predicts them again)"
                    if batch.skipped
                    else ""
                )
                info(f"batch {batch.id}: {batch.item_count} items on {service}{skipped}")
            if not wait:
                return batch, "started"
            return watch_batch(
                session, batch, show=output is Format.table, poll_s=poll, timeout_s=timeout
            )

    batch, ended = state.guarded(body)
    emit(output, batch, lambda: _batch_table(batch))
    if ended == "cancelled":
        info(f"cancelled batch {batch.id}: {counts_text(batch.counts)}")
        raise typer.Exit(INTERRUPTED)
    if ended == "detached":
        info(f"batch {batch.id} keeps running: prelabel executions watch --batch {batch.id}")
        raise typer.Exit(INTERRUPTED)
    if batch.counts.get("failed"):
        info(
            f"{batch.counts['failed']} execution(s) failed: prelabel executions list --status failed"
        )
        raise typer.Exit(ExitCode.PARTIAL)


# --------------------------------------------------------------------------- executions


StatusOpt = Annotated[
    builtins.list[str] | None,
    typer.Option("--status", help=f"Only these ({', '.join(EXECUTION_STATUSES)}); repeat."),
]


def _statuses(values: builtins.list[str] | None) -> Any:
    for value in values or []:
        if value not in EXECUTION_STATUSES:
            raise fail(f"--status must be one of {', '.join(EXECUTION_STATUSES)}, not {value!r}")
    return values or None


@executions_app.command("list")
def executions_list(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Option("--service", "-s", help="Of this service.")] = None,
    trigger: Annotated[str | None, typer.Option("--trigger", help="Of this trigger.")] = None,
    status: StatusOpt = None,
    item: Annotated[str | None, typer.Option("--item", help="Of this item.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Executions shown.")] = 50,
    page: Annotated[int, typer.Option(min=0, help="Page of --limit executions.")] = 0,
    output: OutputOption = Format.table,
) -> None:
    """Executions, newest first.

    Example: prelabel executions list --status failed -s svc_01H...
    """
    statuses = _statuses(status)

    async def work(client: Prelabel) -> ExecutionPage:
        return await client.executions.list(
            service_id=service, trigger_id=trigger, status=statuses, item_id=item,
            page=page, page_size=limit,
        )  # fmt: skip

    found = State.of(ctx).call(work)
    caption = f"{len(found.items)} of {found.total_count}"
    emit(
        output,
        found,
        lambda: table("executions", EXECUTION_COLUMNS, found.items, caption=caption),
    )


@executions_app.command("get")
def executions_get(
    ctx: typer.Context,
    execution_id: Annotated[str, typer.Argument(help="Execution id.")],
    output: OutputOption = Format.table,
) -> None:
    """One execution: status, attempts, timings, replica and error.

    Example: prelabel executions get exe_01H...
    """
    show(
        ctx,
        output,
        lambda c: c.executions.get(execution_id),
        lambda found: fields(f"execution {found.id}", list(found)),
    )


@executions_app.command("watch")
def executions_watch(
    ctx: typer.Context,
    batch: Annotated[str | None, typer.Option("--batch", "-b", help="Of this batch.")] = None,
    service: Annotated[str | None, typer.Option("--service", "-s", help="Of this service.")] = None,
    trigger: Annotated[str | None, typer.Option("--trigger", help="Of this trigger.")] = None,
    expect: Annotated[
        int, typer.Option(min=0, help="Wait until at least this many executions exist.")
    ] = 0,
    timeout: Annotated[float | None, typer.Option(min=1, help="Give up after seconds.")] = None,
    poll: Annotated[float, typer.Option(min=0.05, help="Seconds between polls.")] = 0.5,
    output: OutputOption = Format.table,
) -> None:
    """Live counts per status until nothing is left to run (Ctrl-C stops watching).

    Example: prelabel executions watch -s svc_01H... --expect 20
    """
    state = State.of(ctx)
    started = time.monotonic()

    async def counts(client: Prelabel) -> dict[str, int]:
        if batch is not None:
            return dict((await client.batches.get(batch)).counts)
        return await client.executions.counts(service_id=service, trigger_id=trigger)

    def body() -> dict[str, int]:
        with Session(state) as session:
            current = session.run(counts)
            live = Live(console=err_console, auto_refresh=False)
            # JSON/YAML: no live display (stdout holds the answer alone, stderr stays quiet).
            with live if output is Format.table else contextlib.nullcontext():
                while True:
                    total = sum(current.values())
                    left = sum(current.get(s, 0) for s in UNFINISHED)
                    elapsed = time.monotonic() - started
                    if output is Format.table:
                        live.update(
                            f"{total - left}/{total} finished  {counts_text(current)}  "
                            f"[dim]{elapsed:.0f} s[/dim]",
                            refresh=True,
                        )
                    if total >= expect and left == 0:
                        return current
                    if timeout is not None and elapsed > timeout:
                        raise TimeoutError(
                            f"{left} execution(s) still unfinished after {timeout:g} s"
                        )
                    pause(poll)
                    current = session.run(counts)

    final = state.guarded(body)
    emit(output, final, lambda: None)
    if final.get("failed"):
        raise typer.Exit(ExitCode.PARTIAL)


@executions_app.command("rerun")
def executions_rerun(
    ctx: typer.Context,
    execution_ids: Annotated[
        builtins.list[str] | None, typer.Argument(help="Failed or cancelled executions.")
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Every failed execution (of --service/--trigger).")
    ] = False,
    service: Annotated[str | None, typer.Option("--service", "-s", help="Of this service.")] = None,
    trigger: Annotated[str | None, typer.Option("--trigger", help="Of this trigger.")] = None,
    output: OutputOption = Format.table,
) -> None:
    """Run failed (or cancelled) executions again.

    Example: prelabel executions rerun --failed -s svc_01H...
    """
    if bool(execution_ids) == failed:
        raise fail("give execution ids, or --failed (with optional --service/--trigger)")

    async def work(client: Prelabel) -> dict[str, Any]:
        if failed:
            result = await client.executions.rerun_failed(service_id=service, trigger_id=trigger)
            return result.model_dump()
        ids = []
        for execution_id in execution_ids or []:
            ids.append((await client.executions.rerun(execution_id)).id)
        return {"rerun": len(ids), "execution_ids": ids}

    show(ctx, output, work, lambda result: f"rerunning {result['rerun']} execution(s)")


@executions_app.command("cancel")
def executions_cancel(
    ctx: typer.Context,
    execution_ids: Annotated[
        builtins.list[str], typer.Argument(help="Executions that have not started.")
    ],
    output: OutputOption = Format.table,
) -> None:
    """Cancel executions that have not started.

    Example: prelabel executions cancel exe_01H...
    """

    async def work(client: Prelabel) -> builtins.list[Execution]:
        return [await client.executions.cancel(e) for e in execution_ids]

    show(ctx, output, work, lambda found: table("cancelled", EXECUTION_COLUMNS, found))
