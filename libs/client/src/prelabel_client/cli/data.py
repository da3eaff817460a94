"""Projects, API keys, datasets, items and exports."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Annotated, Any

import typer

from prelabel_client.cli.context import State, fail, show
from prelabel_client.cli.output import Column, Format, OutputOption, emit, fields, info, table
from prelabel_client.client import MAX_PAGE_SIZE
from prelabel_client.errors import ClientError, ExitCode
from prelabel_client.models import ApiKey, Dataset, ExportFormat, Item, Project
from prelabel_client.plan import parse_filter
from prelabel_client.sdk import Prelabel

projects_app = typer.Typer(help="Projects (needs the admin key).", no_args_is_help=True)
api_keys_app = typer.Typer(help="A project's API keys (needs the admin key).", no_args_is_help=True)
datasets_app = typer.Typer(help="List, show, create and delete datasets.", no_args_is_help=True)
items_app = typer.Typer(help="Find, show, download and delete items.", no_args_is_help=True)

DatasetArg = Annotated[str, typer.Argument(help="Dataset name or id.", show_default=False)]
DatasetOpt = Annotated[
    str, typer.Option("--dataset", "-d", help="Dataset name or id.", show_default=False)
]
FilterOpt = Annotated[
    str | None,
    typer.Option("--filter", "-f", help='DQL filter, a JSON object: \'{"dir": "/batch1/**"}\'.'),
]

DATASET_COLUMNS: builtins.list[Column] = [
    ("name", lambda d: d.name),
    ("id", lambda d: d.id),
    ("items", lambda d: d.item_count),
    ("created", lambda d: d.created_at),
    ("description", lambda d: d.description),
]


def _system(item: Item) -> Any:
    return item.metadata.get("system") or {}


ITEM_COLUMNS: builtins.list[Column] = [
    ("filename", lambda i: i.filename),
    ("id", lambda i: i.id),
    ("mimetype", lambda i: _system(i).get("mimetype")),
    ("bytes", lambda i: _system(i).get("size")),
    (
        "pixels",
        lambda i: f"{_system(i)['width']}x{_system(i)['height']}" if "width" in _system(i) else "",
    ),
    ("user metadata", lambda i: i.metadata.get("user") or None),
]


def filter_of(text: str | None) -> dict[str, Any]:
    """``--filter`` as a JSON object, or a usage error."""
    try:
        return parse_filter(text)
    except ClientError as exc:
        raise fail(str(exc), exc.exit_code) from exc


# --------------------------------------------------------------------------- projects


def _need_admin_key(state: State) -> None:
    """No admin key anywhere is an auth failure (exit 4), like a missing API key."""
    settings = state.guarded(lambda: state.settings(need_key=False))
    if settings.admin_key is None:
        raise fail(
            "this needs the admin key: --admin-key, PRELABEL_ADMIN_KEY or `login --admin-key`",
            ExitCode.AUTH,
        )


@projects_app.command("create")
def projects_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Project name.")],
    output: OutputOption = Format.table,
) -> None:
    """Create a project (admin key: --admin-key or PRELABEL_ADMIN_KEY).

    Example: prelabel --admin-key $ADMIN projects create acme
    """

    async def work(client: Prelabel) -> Project:
        return await client.projects.create(name)

    state = State.of(ctx)
    _need_admin_key(state)
    project = state.call(work, need_key=False)
    emit(output, project, lambda: fields(f"project {project.name}", list(project)))


@api_keys_app.command("create")
def api_keys_create(
    ctx: typer.Context,
    project_id: Annotated[str, typer.Argument(help="The project's id.")],
    name: Annotated[str, typer.Option(help="What the key is for.")] = "default",
    output: OutputOption = Format.table,
) -> None:
    """Create an API key of a project; its secret is shown this once.

    Example: prelabel --admin-key $ADMIN api-keys create prj_01H... --name ci -o json
    """

    async def work(client: Prelabel) -> ApiKey:
        return await client.projects.create_api_key(project_id, name)

    state = State.of(ctx)
    _need_admin_key(state)
    key = state.call(work, need_key=False)
    emit(output, key, lambda: fields(f"API key {key.name}", list(key)))
    if output is Format.table:
        info("keep the key now: it is not shown again (`prelabel login --api-key ...`)")


# --------------------------------------------------------------------------- datasets


@datasets_app.command("list")
def datasets_list(ctx: typer.Context, output: OutputOption = Format.table) -> None:
    """The project's datasets.

    Example: prelabel datasets list -o json
    """
    show(
        ctx,
        output,
        lambda c: c.datasets.list(),
        lambda found: table("datasets", DATASET_COLUMNS, found),
    )


@datasets_app.command("get")
def datasets_get(
    ctx: typer.Context, dataset: DatasetArg, output: OutputOption = Format.table
) -> None:
    """One dataset with its item count.

    Example: prelabel datasets get photos
    """
    show(
        ctx,
        output,
        lambda c: c.datasets.resolve(dataset),
        lambda found: fields(f"dataset {found.name}", list(found)),
    )


@datasets_app.command("create")
def datasets_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    description: Annotated[str, typer.Option(help="What the dataset holds.")] = "",
    output: OutputOption = Format.table,
) -> None:
    """Create a dataset (exit 6 when the name is taken).

    Example: prelabel datasets create photos --description "street cameras"
    """
    show(
        ctx,
        output,
        lambda c: c.datasets.create(name, description),
        lambda created: f"created dataset [bold]{created.name}[/bold] ({created.id})",
    )


@datasets_app.command("delete")
def datasets_delete(
    ctx: typer.Context,
    dataset: DatasetArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete a dataset and every item in it.

    Example: prelabel datasets delete old-photos --yes
    """
    state = State.of(ctx)

    async def find(client: Prelabel) -> Dataset:
        return await client.datasets.resolve(dataset)

    found = state.call(find)
    if not yes:
        typer.confirm(
            f"delete dataset {found.name} and its {found.item_count} items?", abort=True, err=True
        )

    async def work(client: Prelabel) -> None:
        await client.datasets.delete(found.id)

    state.call(work)
    info(f"deleted dataset {found.name} ({found.id})")


# --------------------------------------------------------------------------- items


@items_app.command("list")
def items_list(
    ctx: typer.Context,
    dataset: DatasetOpt,
    filter_text: FilterOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE_SIZE, help="Items shown.")] = 50,
    page: Annotated[int, typer.Option(min=0, help="Page of --limit items.")] = 0,
    output: OutputOption = Format.table,
) -> None:
    """Items matching a DQL filter (one page, by file name).

    Example: prelabel items list -d photos --filter '{"metadata.system.mimetype": "image/*"}'
    """
    query = filter_of(filter_text)

    async def work(client: Prelabel) -> tuple[Dataset, Any]:
        found = await client.datasets.resolve(dataset)
        return found, await client.items.query(found.id, query, page=page, page_size=limit)

    found, result = State.of(ctx).call(work)
    caption = f"{len(result.items)} of {result.total_count} matching items"
    if result.has_next:
        caption += f" (next: --page {page + 1})"
    emit(
        output,
        result,
        lambda: table(f"items of {found.name}", ITEM_COLUMNS, result.items, caption=caption),
    )


@items_app.command("get")
def items_get(
    ctx: typer.Context,
    item_id: Annotated[str, typer.Argument(help="Item id.")],
    output: OutputOption = Format.table,
) -> None:
    """One item with its metadata.

    Example: prelabel items get itm_01H... -o yaml
    """
    show(
        ctx,
        output,
        lambda c: c.items.get(item_id),
        lambda item: fields(
            f"item {item.filename}", [(k, getattr(item, k)) for k in type(item).model_fields]
        ),
    )


@items_app.command("download")
def items_download(
    ctx: typer.Context,
    item_ids: Annotated[builtins.list[str], typer.Argument(help="Item ids.", show_default=False)],
    to: Annotated[
        Path, typer.Option("--to", help="Folder to write into (file names kept).")
    ] = Path("."),
) -> None:
    """Download items' files into a folder.

    Example: prelabel items download itm_01H... itm_01J... --to ./out
    """
    to.mkdir(parents=True, exist_ok=True)

    async def work(client: Prelabel) -> builtins.list[tuple[Path, int]]:
        written = []
        for item_id in item_ids:
            item = await client.items.get(item_id)
            path = to / Path(item.name or item.id).name
            written.append((path, await client.items.download_to(item_id, path)))
        return written

    for path, size in State.of(ctx).call(work):
        info(f"wrote {path} ({size:,} bytes)")


@items_app.command("delete")
def items_delete(
    ctx: typer.Context,
    item_ids: Annotated[builtins.list[str], typer.Argument(help="Item ids.", show_default=False)],
) -> None:
    """Delete items.

    Example: prelabel items delete itm_01H...
    """

    async def work(client: Prelabel) -> None:
        for item_id in item_ids:
            await client.items.delete(item_id)

    State.of(ctx).call(work)
    info(f"deleted {len(item_ids)} item(s)")


# --------------------------------------------------------------------------- export


def export(
    ctx: typer.Context,
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", help="Dataset name or id.", show_default=False)
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", "-t", help="Task id (its reviewed items).")
    ] = None,
    format: Annotated[
        str, typer.Option("--format", "-F", help="coco (one JSON document) or jsonl.")
    ] = "coco",
    status: Annotated[
        builtins.list[str] | None,
        typer.Option(help="Task items with this review status (repeat; --task only)."),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Write here (default: stdout).")
    ] = None,
) -> None:
    """Export annotations as COCO JSON or JSON lines, of a dataset or a task.

    Example: prelabel export --task tsk_01H... --status approved --format coco --file labels.json
    """
    if (dataset is None) == (task is None):
        raise fail("give --dataset or --task")
    if format not in ("coco", "jsonl"):
        raise fail(f"--format must be coco or jsonl, not {format!r}")
    fmt: ExportFormat = "coco" if format == "coco" else "jsonl"

    async def work(client: Prelabel) -> bytes:
        if task is not None:
            return await client.tasks.export(task, fmt, status or None)  # type: ignore[arg-type]
        assert dataset is not None
        found = await client.datasets.resolve(dataset)
        return await client.annotations.export_dataset(found.id, fmt)

    content = State.of(ctx).call(work)
    if file is None:
        typer.echo(content.decode("utf-8"), nl=False)
        return
    file.write_bytes(content)
    info(f"wrote {file} ({len(content):,} bytes, {fmt})")
