"""Dead letters: what a service's queues gave up on, the project's only; list and replay."""

from __future__ import annotations

import builtins
import enum
from typing import Annotated

import typer

from prelabel_client.cli.context import State, fail
from prelabel_client.cli.output import Column, Format, OutputOption, emit, info, table
from prelabel_client.endpoints import Service
from prelabel_client.models import DeadLetterPage, ReplayResult
from prelabel_client.sdk import Prelabel

dead_letters_app = typer.Typer(
    help="Messages a service's queues dead-lettered (the project's only): list, replay.",
    no_args_is_help=True,
)


class ServiceName(enum.StrEnum):
    """``--service``: whose queues."""

    dataset = "dataset"
    trigger_router = "trigger-router"
    model_serving = "model-serving"
    annotation = "annotation"
    billing = "billing"


ServiceOpt = Annotated[
    ServiceName,
    typer.Option("--service", "-s", help="The service whose queues to read.", show_default=False),
]
QueueOpt = Annotated[
    str | None,
    typer.Option(help="One queue: its name or its handler's (default: every queue)."),
]

LETTER_COLUMNS: builtins.list[Column] = [
    ("id", lambda d: d.id),
    ("queue", lambda d: d.queue),
    ("type", lambda d: d.event_type),
    ("reason", lambda d: d.reason),
    ("deaths", lambda d: d.deaths),
    ("retries", lambda d: d.retries),
    ("dead-lettered", lambda d: d.dead_lettered_at),
    ("subject", lambda d: d.subject),
]


def _service(name: ServiceName) -> Service:
    service: Service = name.value
    return service


@dead_letters_app.command("list")
def dead_letters_list(
    ctx: typer.Context,
    service: ServiceOpt,
    queue: QueueOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Most letters shown.")] = 50,
    output: OutputOption = Format.table,
) -> None:
    """The project's dead letters of a service's queues, with the reason (left in place;
    secrets in their bodies read ***).

    Example: prelabel dead-letters list --service annotation -o json
    """

    async def work(client: Prelabel) -> DeadLetterPage:
        return await client.dead_letters.list(_service(service), queue, limit=limit)

    page = State.of(ctx).call(work)
    caption = f"{len(page.letters)} shown; {page.scanned} messages looked at"
    if page.truncated:
        caption += f" (stopped before the end: at most {page.scan_limit} per request)"
    emit(
        output,
        page,
        lambda: table(
            f"dead letters of {service.value}", LETTER_COLUMNS, page.letters, caption=caption
        ),
    )


@dead_letters_app.command("replay")
def dead_letters_replay(
    ctx: typer.Context,
    service: ServiceOpt,
    ids: Annotated[
        builtins.list[str] | None,
        typer.Option("--id", help="A dead letter's id (from list; repeat).", show_default=False),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every dead letter of the project (in --queue).")
    ] = False,
    queue: QueueOpt = None,
    output: OutputOption = Format.table,
) -> None:
    """Put dead letters back on the queue they died in (their delayed retries reset);
    other projects' are never touched.

    Example: prelabel dead-letters replay --service dataset --all --queue on_ingest_item
    """
    if bool(ids) == all_:
        raise fail("give --id (one or more) or --all")

    async def work(client: Prelabel) -> ReplayResult:
        return await client.dead_letters.replay(_service(service), ids, all=all_, queue=queue)

    result = State.of(ctx).call(work)
    if output is Format.table:
        line = f"replayed {result.replayed}"
        if result.not_found:
            line += f"; not found: {', '.join(result.not_found_ids)}"
        if result.failed:
            line += f"; {result.failed} refused by the broker (left in place)"
        if result.truncated:
            line += f"; stopped after {result.scan_limit} messages: run it again for more"
        info(line)
        return
    emit(output, result)
