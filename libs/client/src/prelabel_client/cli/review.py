"""Labeling tasks (review from the terminal) and billing."""

from __future__ import annotations

import builtins
import getpass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import typer
from rich.table import Table

from prelabel_client.cli.context import State, fail, show
from prelabel_client.cli.output import (
    Column,
    Format,
    OutputOption,
    console,
    emit,
    fields,
    info,
    table,
)
from prelabel_client.models import (
    Budget,
    BurnRate,
    ModelUsage,
    ModelUsageReport,
    ReplicaUsage,
    Task,
    TaskItem,
    TaskItemPage,
    TaskProgress,
    Usage,
)
from prelabel_client.sdk import Prelabel

tasks_app = typer.Typer(
    help="Labeling tasks: create, follow, review from the terminal.", no_args_is_help=True
)
billing_app = typer.Typer(
    help="Budget, top-ups, usage, burn rate and cost per accepted label.", no_args_is_help=True
)

TaskArg = Annotated[str, typer.Argument(help="Task id.", show_default=False)]
ItemArg = Annotated[str, typer.Argument(help="Item id.", show_default=False)]
ReviewerOpt = Annotated[
    str | None, typer.Option(help="Your name in the review record (default: your login).")
]

TASK_COLUMNS: builtins.list[Column] = [
    ("name", lambda t: t.name),
    ("id", lambda t: t.id),
    ("dataset", lambda t: t.dataset_id),
    ("auto add", lambda t: t.auto_add or bool(t.auto_add_from_services)),
    ("items", lambda t: t.progress.total if t.progress else None),
    ("reviewed", lambda t: f"{t.progress.done_fraction:.0%}" if t.progress else None),
    ("created", lambda t: t.created_at),
]
TASK_ITEM_COLUMNS: builtins.list[Column] = [
    ("item", lambda i: i.item_id),
    ("file", lambda i: i.item.filename if i.item else None),
    ("status", lambda i: i.status),
    ("annotations", lambda i: len(i.annotations)),
    ("model", lambda i: i.model.name if i.model else None),
    ("reviewer", lambda i: i.reviewer),
]


def _reviewer(value: str | None) -> str:
    if value:
        return value
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _progress_table(task_id: str, progress: TaskProgress) -> Table:
    pairs: builtins.list[tuple[str, Any]] = [("items", progress.total)]
    pairs += list(progress.counts.items())
    pairs.append(("reviewed", f"{progress.reviewed} ({progress.done_fraction:.0%})"))
    return fields(f"task {task_id}", pairs)


def show_item(item: TaskItem) -> Table:
    """A task item and its annotations, for review."""
    name = item.item.filename if item.item and item.item.filename else item.item_id
    size = f" {item.item.width}x{item.item.height}" if item.item and item.item.width else ""
    model = f", model {item.model.name} {item.model.version}" if item.model else ""
    rendered = Table(title=f"{name}{size} ({item.item_id}{model})", title_justify="left")
    for header in ("label", "type", "confidence", "text", "coordinates"):
        rendered.add_column(header, overflow="fold")
    for annotation in item.annotations:
        confidence = annotation.confidence
        rendered.add_row(
            annotation.label,
            annotation.type,
            f"{confidence:.2f}" if confidence is not None else "",
            annotation.text or "",
            str(annotation.coordinates)[:60],
        )
    if not item.annotations:
        rendered.caption = "no annotations"
    return rendered


# --------------------------------------------------------------------------- tasks


@tasks_app.command("create")
def tasks_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Task name.", show_default=False)],
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="Dataset name or id.", show_default=False)
    ],
    auto_add: Annotated[
        bool, typer.Option(help="Every prediction on the dataset adds its item.")
    ] = False,
    from_service: Annotated[
        builtins.list[str] | None,
        typer.Option(help="Predictions of this service add their item (repeat)."),
    ] = None,
    output: OutputOption = Format.table,
) -> None:
    """Create a labeling task on a dataset.

    Example: prelabel tasks create "review digits" -d photos --from-service svc_01H...
    """

    async def work(client: Prelabel) -> Task:
        found = await client.datasets.resolve(dataset)
        return await client.tasks.create(
            name, found.id, auto_add=auto_add, auto_add_from_services=from_service or ()
        )

    show(ctx, output, work, lambda task: f"created task [bold]{task.name}[/bold] ({task.id})")


@tasks_app.command("list")
def tasks_list(ctx: typer.Context, output: OutputOption = Format.table) -> None:
    """The project's tasks, newest first.

    Example: prelabel tasks list
    """
    show(ctx, output, lambda c: c.tasks.list(), lambda found: table("tasks", TASK_COLUMNS, found))


@tasks_app.command("progress")
def tasks_progress(
    ctx: typer.Context, task_id: TaskArg, output: OutputOption = Format.table
) -> None:
    """A task's items per status and the fraction reviewed.

    Example: prelabel tasks progress tsk_01H... -o json
    """
    show(
        ctx,
        output,
        lambda c: c.tasks.progress(task_id),
        lambda progress: _progress_table(task_id, progress),
    )


@tasks_app.command("items")
def tasks_items(
    ctx: typer.Context,
    task_id: TaskArg,
    status: Annotated[
        str | None, typer.Option(help="pending-review, approved, corrected or discarded.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Items shown.")] = 50,
    output: OutputOption = Format.table,
) -> None:
    """A task's items with their status.

    Example: prelabel tasks items tsk_01H... --status pending-review
    """

    async def work(client: Prelabel) -> TaskItemPage:
        return await client.tasks.items(task_id, status=status, limit=limit)  # type: ignore[arg-type]

    page = State.of(ctx).call(work)
    caption = f"{len(page.items)} of {page.total}"
    emit(
        output,
        page,
        lambda: table(f"items of {task_id}", TASK_ITEM_COLUMNS, page.items, caption=caption),
    )


@tasks_app.command("next")
def tasks_next(ctx: typer.Context, task_id: TaskArg, output: OutputOption = Format.table) -> None:
    """The next item waiting for review, with its annotations (exit 5 when none is left).

    Example: prelabel tasks next tsk_01H...
    """

    async def work(client: Prelabel) -> TaskItem | None:
        return await client.tasks.next_pending(task_id)

    item = State.of(ctx).call(work)
    if item is None:
        raise fail(f"nothing left to review in task {task_id}", 5)
    emit(output, item, lambda: show_item(item))


def _review(
    ctx: typer.Context,
    task_id: str,
    item_ids: builtins.list[str],
    action: str,
    reviewer: str | None,
    output: Format,
) -> None:
    who = _reviewer(reviewer)

    async def work(client: Prelabel) -> builtins.list[TaskItem]:
        return [
            await client.tasks.review(task_id, item_id, action, reviewer=who)  # type: ignore[arg-type]
            for item_id in item_ids
        ]

    show(ctx, output, work, lambda done: table(f"{action}d", TASK_ITEM_COLUMNS, done))


@tasks_app.command("approve")
def tasks_approve(
    ctx: typer.Context,
    task_id: TaskArg,
    item_ids: Annotated[builtins.list[str], typer.Argument(help="Item ids.", show_default=False)],
    reviewer: ReviewerOpt = None,
    output: OutputOption = Format.table,
) -> None:
    """Approve pending items as the model annotated them.

    Example: prelabel tasks approve tsk_01H... itm_01H...
    """
    _review(ctx, task_id, item_ids, "approve", reviewer, output)


@tasks_app.command("discard")
def tasks_discard(
    ctx: typer.Context,
    task_id: TaskArg,
    item_ids: Annotated[builtins.list[str], typer.Argument(help="Item ids.", show_default=False)],
    reviewer: ReviewerOpt = None,
    output: OutputOption = Format.table,
) -> None:
    """Discard pending items (not fit for the dataset).

    Example: prelabel tasks discard tsk_01H... itm_01H...
    """
    _review(ctx, task_id, item_ids, "discard", reviewer, output)


@tasks_app.command("review")
def tasks_review(
    ctx: typer.Context,
    task_id: TaskArg,
    reviewer: ReviewerOpt = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many items.")] = None,
) -> None:
    r"""Review a task item by item: \[a]pprove, \[d]iscard, \[s]kip (next), \[q]uit.

    Example: prelabel tasks review tsk_01H...
    """
    state = State.of(ctx)
    who = _reviewer(reviewer)
    tally = {"approved": 0, "discarded": 0, "skipped": 0}

    async def work(client: Prelabel) -> None:
        skipped = 0
        while limit is None or sum(tally.values()) < limit:
            page = await client.tasks.items(
                task_id, status="pending-review", limit=1, offset=skipped
            )
            if not page.items:
                info("nothing left to review")
                return
            item = page.items[0]
            console.print(show_item(item))
            console.print(f"{page.total - skipped} pending; you: {who}")
            answer = typer.prompt("[a]pprove, [d]iscard, [s]kip, [q]uit", default="s")
            choice = answer.strip().lower()[:1]
            if choice == "q":
                return
            if choice == "a":
                await client.tasks.review(task_id, item.item_id, "approve", reviewer=who)
                tally["approved"] += 1
            elif choice == "d":
                await client.tasks.review(task_id, item.item_id, "discard", reviewer=who)
                tally["discarded"] += 1
            else:
                skipped += 1
                tally["skipped"] += 1

    state.call(work)
    info(", ".join(f"{count} {what}" for what, count in tally.items()))


# --------------------------------------------------------------------------- billing


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise fail(f"{text!r} is not an amount (e.g. 25 or 12.50)") from exc
    if not value.is_finite() or value < 0:
        raise fail(f"{text!r} is not an amount (e.g. 25 or 12.50)")
    return value


def _budget_table(budget: Budget) -> Table:
    return fields(
        "budget",
        [
            ("budget", "unlimited" if budget.budget is None else budget.budget),
            ("spent", budget.spent),
            ("remaining", "unlimited" if budget.remaining is None else budget.remaining),
            ("exhausted", budget.exhausted),
            ("charged at", budget.charged_at),
        ],
    )


@billing_app.command("budget")
def billing_budget(
    ctx: typer.Context,
    set_to: Annotated[
        str | None, typer.Option("--set", help="Set the budget (an amount, or 'unlimited').")
    ] = None,
    output: OutputOption = Format.table,
) -> None:
    """The automation budget: what was spent, what is left; --set changes it.

    Example: prelabel billing budget --set 50
    """
    amount = None if set_to in (None, "unlimited") else _amount(set_to)

    async def work(client: Prelabel) -> Budget:
        if set_to is not None:
            return await client.billing.set_budget(amount)
        return await client.billing.budget()

    show(ctx, output, work, _budget_table)


@billing_app.command("top-up")
def billing_top_up(
    ctx: typer.Context,
    amount: Annotated[str, typer.Argument(help="Amount to add.", show_default=False)],
    output: OutputOption = Format.table,
) -> None:
    """Add to the budget (work waiting for budget resumes).

    Example: prelabel billing top-up 25
    """
    value = _amount(amount)

    show(ctx, output, lambda c: c.billing.top_up(value), _budget_table)


@billing_app.command("usage")
def billing_usage(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="First UTC day, YYYY-MM-DD.")] = None,
    until: Annotated[str | None, typer.Option(help="Last UTC day, YYYY-MM-DD.")] = None,
    service: Annotated[str | None, typer.Option("--service", "-s", help="Of this service.")] = None,
    replicas: Annotated[bool, typer.Option(help="Per replica instead of per day.")] = False,
    output: OutputOption = Format.table,
) -> None:
    """Runtime, cost and predictions per service and day (default: last 30 days).

    Example: prelabel billing usage --since 2025-01-01 -o json
    """
    try:
        first = date.fromisoformat(since) if since else None
        last = date.fromisoformat(until) if until else None
    except ValueError as exc:
        raise fail(f"--since/--until take YYYY-MM-DD: {exc}") from exc

    async def work(client: Prelabel) -> Usage | builtins.list[ReplicaUsage]:
        if replicas:
            return await client.billing.replicas(since=first, until=last)
        return await client.billing.usage(since=first, until=last, service_id=service)

    found = State.of(ctx).call(work)
    if isinstance(found, list):
        columns: builtins.list[Column] = [
            ("replica", lambda r: r.replica_id),
            ("service", lambda r: r.service_id),
            ("instance", lambda r: r.instance_type),
            ("running", lambda r: r.running),
            ("runtime s", lambda r: r.runtime_seconds),
            ("cost", lambda r: r.cost),
        ]
        emit(output, found, lambda: table("replicas", columns, found))
        return
    usage = found
    columns = [
        ("day", lambda r: r.day),
        ("service", lambda r: r.service_id),
        ("runtime s", lambda r: r.runtime_seconds),
        ("predictions", lambda r: r.predictions),
        ("cost", lambda r: r.cost),
    ]
    total = usage.total
    caption = (
        f"{usage.since} .. {usage.until}: {total.runtime_seconds} s, "
        f"{total.predictions} predictions, cost {total.cost}"
    )
    emit(output, usage, lambda: table("usage", columns, usage.rows, caption=caption))


def _percent(value: float | None) -> str | None:
    return None if value is None else f"{value:.0%}"


MODEL_USAGE_COLUMNS: builtins.list[Column] = [
    ("model version", lambda m: f"{m.model.name} {m.model.version}" if m.model else "(none)"),
    ("service", lambda m: m.service_id),
    ("runtime s", lambda m: m.runtime_seconds),
    ("cost", lambda m: m.cost),
    ("predictions", lambda m: m.predictions),
    ("accepted unchanged", lambda m: m.accepted_unchanged),
    ("acceptance", lambda m: _percent(m.acceptance_rate)),
    ("auto-accepted", lambda m: _percent(m.auto_accepted_share)),
    ("cost / accepted label", lambda m: m.cost_per_accepted_label),
]


def _moment(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise fail(f"{option} takes an ISO date or time (YYYY-MM-DD[THH:MM[:SS][+HH:MM]])") from exc


@billing_app.command("models")
def billing_models(
    ctx: typer.Context,
    start: Annotated[
        str | None, typer.Option("--from", help="Window start, ISO date/time (default: ever).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Window end, excluded (default: now).")
    ] = None,
    output: OutputOption = Format.table,
) -> None:
    """What pre-labeling saves, per model version: runtime, cost, predictions, acceptance,
    auto-accepted share and cost per accepted label (cost / predictions accepted unchanged).

    Example: prelabel billing models --from 2025-01-01 -o json
    """
    first, last = _moment(start, "--from"), _moment(end, "--to")

    async def work(client: Prelabel) -> ModelUsageReport:
        return await client.billing.models(start=first, end=last)

    report = State.of(ctx).call(work)
    rows: builtins.list[ModelUsage] = report.models
    caption = f"{report.start or 'ever'} .. {report.end}"
    emit(
        output,
        report,
        lambda: table("cost per accepted label", MODEL_USAGE_COLUMNS, rows, caption=caption),
    )


@billing_app.command("burn-rate")
def billing_burn_rate(ctx: typer.Context, output: OutputOption = Format.table) -> None:
    """What the running replicas cost now, and how long the budget lasts at that rate.

    Example: prelabel billing burn-rate
    """

    async def work(client: Prelabel) -> BurnRate:
        return await client.billing.burn_rate()

    rate = State.of(ctx).call(work)
    left = rate.seconds_left
    emit(
        output,
        rate,
        lambda: fields(
            "burn rate",
            [
                ("running replicas", rate.running_replicas),
                ("per second", rate.per_second),
                ("per hour", rate.per_hour),
                ("budget lasts", "unlimited" if left is None else f"{float(left) / 3600:.1f} h"),
            ],
        ),
    )
