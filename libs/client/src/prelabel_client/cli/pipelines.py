"""Pipelines: apply a YAML/JSON definition, start, stop, status, executions, run."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Annotated, Any

import typer

from prelabel_client.cli.context import State, fail, show
from prelabel_client.cli.data import filter_of
from prelabel_client.cli.output import Column, Format, OutputOption, emit, fields, table
from prelabel_client.cli.serving import read_document
from prelabel_client.models import Pipeline, PipelineExecutionPage
from prelabel_client.sdk import Prelabel

pipelines_app = typer.Typer(
    help="Pipelines (Dataset -> Predict -> Task): apply, start, stop, status, executions.",
    no_args_is_help=True,
)

PipelineArg = Annotated[str, typer.Argument(help="Pipeline id.", show_default=False)]

PIPELINE_COLUMNS: builtins.list[Column] = [
    ("name", lambda p: p.name),
    ("id", lambda p: p.id),
    ("version", lambda p: p.version),
    ("status", lambda p: p.status),
    ("nodes", lambda p: len(p.definition.get("nodes", []))),
    ("executions", lambda p: p.executions or None),
]
RUN_COLUMNS: builtins.list[Column] = [
    ("id", lambda e: e.id),
    ("item", lambda e: e.item_id),
    ("status", lambda e: e.status),
    ("nodes", lambda e: " ".join(f"{n.get('node_id')}:{n.get('status')}" for n in e.nodes)),
    ("failed node", lambda e: e.failed_node),
    ("error", lambda e: e.error),
]


def _status_table(pipeline: Pipeline) -> Any:
    pairs: builtins.list[tuple[str, Any]] = [
        ("id", pipeline.id),
        ("status", pipeline.status),
        ("version", pipeline.version),
        ("started", pipeline.started_at),
        ("executions", pipeline.executions),
    ]
    pairs += [(f"node {node}", counts) for node, counts in pipeline.counts.items()]
    return fields(f"pipeline {pipeline.name}", pairs)


@pipelines_app.command("apply")
def pipelines_apply(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Definition, YAML or JSON.", show_default=False)],
    start: Annotated[bool, typer.Option(help="Start it afterwards.")] = False,
    output: OutputOption = Format.table,
) -> None:
    """Create the pipeline a file defines, or update the one with its name.

    Example: prelabel pipelines apply pipeline.yaml --start
    """
    definition = read_document(str(file), "pipeline file")
    if not isinstance(definition, dict):
        raise fail(f"{file} must hold a mapping (name, nodes, edges)")

    async def work(client: Prelabel) -> tuple[Pipeline, bool]:
        pipeline, created = await client.pipelines.apply(definition)
        if start:
            pipeline = await client.pipelines.start(pipeline.id)
        return pipeline, created

    pipeline, created = State.of(ctx).call(work)
    verb = "created" if created else f"updated (version {pipeline.version})"
    emit(output, pipeline, lambda: f"{verb} pipeline [bold]{pipeline.name}[/bold] "
         f"({pipeline.id}): {pipeline.status}")  # fmt: skip


@pipelines_app.command("list")
def pipelines_list(ctx: typer.Context, output: OutputOption = Format.table) -> None:
    """The project's pipelines.

    Example: prelabel pipelines list -o json
    """
    show(
        ctx,
        output,
        lambda c: c.pipelines.list(),
        lambda found: table("pipelines", PIPELINE_COLUMNS, found),
    )


@pipelines_app.command("status")
def pipelines_status(
    ctx: typer.Context, pipeline_id: PipelineArg, output: OutputOption = Format.table
) -> None:
    """A pipeline's status and its executions per node and status.

    Example: prelabel pipelines status pip_01H...
    """
    show(
        ctx,
        output,
        lambda c: c.pipelines.get(pipeline_id),
        _status_table,
    )


def _switch(ctx: typer.Context, pipeline_id: str, start: bool, output: Format) -> None:
    async def work(client: Prelabel) -> Pipeline:
        if start:
            return await client.pipelines.start(pipeline_id)
        return await client.pipelines.stop(pipeline_id)

    show(ctx, output, work, lambda pipeline: f"pipeline {pipeline.name}: {pipeline.status}")


@pipelines_app.command("start")
def pipelines_start(
    ctx: typer.Context, pipeline_id: PipelineArg, output: OutputOption = Format.table
) -> None:
    """Start a pipeline: its dataset node's trigger lets items in.

    Example: prelabel pipelines start pip_01H...
    """
    _switch(ctx, pipeline_id, True, output)


@pipelines_app.command("stop")
def pipelines_stop(
    ctx: typer.Context, pipeline_id: PipelineArg, output: OutputOption = Format.table
) -> None:
    """Stop a pipeline (items inside finish their way).

    Example: prelabel pipelines stop pip_01H...
    """
    _switch(ctx, pipeline_id, False, output)


@pipelines_app.command("run")
def pipelines_run(
    ctx: typer.Context,
    pipeline_id: PipelineArg,
    item_ids: Annotated[builtins.list[str] | None, typer.Argument(help="Item ids.")] = None,
    filter_text: Annotated[
        str | None, typer.Option("--filter", "-f", help="DQL filter over the dataset node's items.")
    ] = None,
    output: OutputOption = Format.table,
) -> None:
    """Send items already in the dataset through the pipeline now.

    Example: prelabel pipelines run pip_01H... --filter '{"dir": "/backlog"}'
    """
    if bool(item_ids) == (filter_text is not None):
        raise fail("give item ids or --filter")
    query = filter_of(filter_text) if filter_text is not None else None

    show(
        ctx,
        output,
        lambda c: c.pipelines.run(pipeline_id, item_ids=item_ids or None, filter=query),
        lambda run: f"run {run.run_id}: {run.entered} of {run.items} items entered",
    )


@pipelines_app.command("executions")
def pipelines_executions(
    ctx: typer.Context,
    pipeline_id: PipelineArg,
    status: Annotated[str | None, typer.Option(help="Only executions in this status.")] = None,
    node: Annotated[str | None, typer.Option(help="Only those that reached this node.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Executions shown.")] = 50,
    output: OutputOption = Format.table,
) -> None:
    """A pipeline's executions, each item's way node by node.

    Example: prelabel pipelines executions pip_01H... --status failed
    """

    async def work(client: Prelabel) -> PipelineExecutionPage:
        return await client.pipelines.executions(
            pipeline_id, status=status, node_id=node, page_size=limit
        )

    page = State.of(ctx).call(work)
    caption = f"{len(page.items)} of {page.total_count}"
    emit(
        output, page, lambda: table("pipeline executions", RUN_COLUMNS, page.items, caption=caption)
    )
