"""The ``prelabel`` command line: upload files, list and create datasets, list items.

Configuration comes from ``PRELABEL_*`` environment variables (see
``ClientSettings``); ``--url`` and ``--api-key`` override them.
Exit status: 0 on success, 1 when any file failed to upload (or the service
refused a request), 2 for bad options or configuration.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from prelabel_client.client import MAX_PAGE_SIZE, PrelabelClient
from prelabel_client.errors import ApiError, ClientError
from prelabel_client.plan import LocalFile, collect_files, parse_filter, parse_metadata
from prelabel_client.settings import ClientSettings
from prelabel_client.summary import FileOutcome, UploadSummary
from prelabel_client.uploader import Uploader, UploadProgress

T = TypeVar("T")

app = typer.Typer(
    name="prelabel",
    help="Upload files into prelabel datasets and look at what is there.",
    no_args_is_help=True,
    add_completion=False,
)
datasets_app = typer.Typer(help="List and create datasets.", no_args_is_help=True)
items_app = typer.Typer(help="Look at a dataset's items.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
app.add_typer(items_app, name="items")

console = Console()
err_console = Console(stderr=True)

MAX_FAILED_ROWS = 50
"""Failed files listed one by one; beyond this the reasons are only counted."""


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            help="Base URL of the services (env PRELABEL_URL; PRELABEL_DATASET_URL overrides).",
            show_default=False,
        ),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(help="Project API key (env PRELABEL_API_KEY).", show_default=False)
    ] = None,
) -> None:
    """prelabel: datasets and uploads."""
    ctx.obj = {"url": url, "api_key": api_key}


def _settings(ctx: typer.Context, **overrides: Any) -> ClientSettings:
    values = {k: v for k, v in {**(ctx.obj or {}), **overrides}.items() if v is not None}
    try:
        return ClientSettings(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            if field == "api_key" and error["type"] == "missing":
                problems.append("PRELABEL_API_KEY is not set (or pass --api-key)")
            else:
                problems.append(f"PRELABEL_{field.upper()}: {error['msg']}")
        raise ClientError("; ".join(problems)) from exc


def _client(settings: ClientSettings) -> PrelabelClient:
    return PrelabelClient(
        settings.endpoints.dataset,
        settings.api_key.get_secret_value(),
        timeout_s=settings.timeout_s,
        max_connections=max(settings.concurrency * 2, 10),
    )


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``; turn the errors a user can act on into a message and an exit status."""
    try:
        return asyncio.run(work)
    except ClientError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    except ApiError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False)
        raise typer.Exit(1) from exc


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/bold red] {message}", highlight=False)
    return typer.Exit(2)


# ---------------------------------------------------------------------- upload


class _BarProgress(UploadProgress):
    """The upload's progress bar: files and bytes."""

    def __init__(self, progress: Progress) -> None:
        self.bar = progress
        self.task: TaskID | None = None

    def started(self, files: int, total_bytes: int) -> None:
        self.task = self.bar.add_task(
            "uploading", total=total_bytes or None, files=0, total_files=files
        )

    def advanced(self, file: LocalFile) -> None:
        if self.task is not None:
            done = self.bar.tasks[self.task].fields["files"] + 1
            self.bar.update(self.task, advance=file.size, files=done)

    def waiting(self, count: int) -> None:
        if self.task is not None:
            self.bar.update(self.task, description=f"registering {count}")


@app.command()
def upload(
    ctx: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(help="Files and folders (walked recursively).", show_default=False),
    ],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name.")],
    remote_dir: Annotated[
        str, typer.Option("--dir", help="Remote directory; subfolders are appended.")
    ] = "/",
    metadata: Annotated[
        str | None,
        typer.Option(help='User metadata for every file, a JSON object: \'{"camera": "x"}\'.'),
    ] = None,
    via: Annotated[
        str, typer.Option(help="http (the API) or broker (S3 + ingest_item.v1 command).")
    ] = "http",
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, max=256, help="Files in flight (env PRELABEL_CONCURRENCY, default 8)."),
    ] = None,
    create_dataset: Annotated[
        bool, typer.Option("--create-dataset", help="Create the dataset if it is missing.")
    ] = False,
    wait_timeout: Annotated[
        float, typer.Option(min=0, help="Broker path: seconds to wait for registration.")
    ] = 120.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON (no progress bar).")
    ] = False,
) -> None:
    """Upload files and folders into a dataset; content already in a directory is skipped."""
    if via not in {"http", "broker"}:
        raise _fail(f"--via must be http or broker, not {via!r}")
    try:
        user_metadata = parse_metadata(metadata)
        files = collect_files(paths, remote_dir)
        settings = _settings(ctx, concurrency=concurrency)
    except ClientError as exc:
        raise _fail(str(exc)) from exc
    if not files:
        err_console.print("nothing to upload: the folders given hold no files", highlight=False)
    summary = _run(
        _upload(
            settings,
            files,
            dataset,
            user_metadata,
            "broker" if via == "broker" else "http",
            create_dataset=create_dataset,
            wait_timeout=wait_timeout,
            show_progress=not as_json,
        )
    )
    if as_json:
        console.print_json(data=_summary_json(summary))
    else:
        _print_summary(summary)
    raise typer.Exit(summary.exit_code)


async def _upload(
    settings: ClientSettings,
    files: list[LocalFile],
    dataset_name: str,
    metadata: dict[str, Any],
    via: Literal["http", "broker"],
    *,
    create_dataset: bool,
    wait_timeout: float,
    show_progress: bool,
) -> UploadSummary:
    async with _client(settings) as client:
        dataset = await client.dataset_by_name(dataset_name, create=create_dataset)
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[files]}/{task.fields[total_files]} files"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=err_console,
            disable=not show_progress,
            transient=False,
        )
        ingestor = None
        if via == "broker":
            # Imported here: S3 and AMQP clients cost a second of start-up the HTTP path skips.
            from prelabel_client.broker import BrokerIngestor

            ingestor = BrokerIngestor.from_settings(settings)
        with progress:
            uploader = Uploader(
                client,
                concurrency=settings.concurrency,
                ingestor=ingestor,
                progress=_BarProgress(progress),
                register_timeout_s=wait_timeout,
            )
            if ingestor is None:
                return await uploader.upload(files, dataset.id, metadata=metadata, via=via)
            async with ingestor:
                return await uploader.upload(files, dataset.id, metadata=metadata, via=via)


def _summary_json(summary: UploadSummary) -> dict[str, Any]:
    def entry(outcome: FileOutcome) -> dict[str, Any]:
        return {
            "path": str(outcome.file.path),
            "dir": outcome.file.remote_dir,
            "sha256": outcome.sha256,
            "item_id": outcome.item_id,
            "reason": outcome.reason,
        }

    return {
        "counts": summary.counts(),
        "elapsed_s": round(summary.elapsed_s, 3),
        "uploaded": [entry(o) for o in summary.uploaded],
        "skipped": [entry(o) for o in summary.skipped],
        "failed": [entry(o) for o in summary.failed],
    }


def _print_summary(summary: UploadSummary) -> None:
    counts = summary.counts()
    table = Table(title="upload summary", title_justify="left")
    table.add_column("result")
    table.add_column("files", justify="right")
    table.add_column("detail")
    rate = len(summary.uploaded) / summary.elapsed_s if summary.elapsed_s > 0 else 0.0
    table.add_row(
        "[green]uploaded[/green]",
        str(counts["uploaded"]),
        f"{summary.uploaded_bytes:,} bytes in {summary.elapsed_s:.1f} s ({rate:.1f} files/s)",
    )
    table.add_row(
        "[yellow]skipped[/yellow]", str(counts["skipped"]), "content already in the directory"
    )
    table.add_row("[red]failed[/red]" if counts["failed"] else "failed", str(counts["failed"]), "")
    console.print(table)
    if not summary.failed:
        return
    failed = Table(title="failed files", title_justify="left", show_lines=False)
    failed.add_column("file", overflow="fold")
    failed.add_column("reason", overflow="fold")
    for outcome in summary.failed[:MAX_FAILED_ROWS]:
        failed.add_row(str(outcome.file.path), outcome.reason)
    console.print(failed)
    if len(summary.failed) > MAX_FAILED_ROWS:
        console.print(f"... and {len(summary.failed) - MAX_FAILED_ROWS} more; by reason:")
        for reason, count in summary.failure_reasons():
            console.print(f"  {count:>6}  {reason}", highlight=False)


# ---------------------------------------------------------------------- datasets


@datasets_app.command("list")
def datasets_list(ctx: typer.Context) -> None:
    """The project's datasets."""
    settings = _settings_or_exit(ctx)

    async def work() -> None:
        async with _client(settings) as client:
            found = await client.list_datasets()
        table = Table(title="datasets", title_justify="left")
        for column in ("name", "id", "items", "created"):
            table.add_column(column, justify="right" if column == "items" else "left")
        for dataset in found:
            table.add_row(
                dataset.name,
                dataset.id,
                str(dataset.item_count),
                dataset.created_at.strftime("%Y-%m-%d %H:%M"),
            )
        console.print(table)

    _run(work())


@datasets_app.command("create")
def datasets_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    description: Annotated[str, typer.Option(help="What the dataset holds.")] = "",
) -> None:
    """Create a dataset."""
    settings = _settings_or_exit(ctx)

    async def work() -> None:
        async with _client(settings) as client:
            dataset = await client.create_dataset(name, description)
        console.print(f"created dataset [bold]{dataset.name}[/bold] ({dataset.id})")

    _run(work())


# ---------------------------------------------------------------------- items


@items_app.command("list")
def items_list(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name.")],
    filter_text: Annotated[
        str | None, typer.Option("--filter", help='DQL filter, e.g. \'{"dir": "/batch1/**"}\'.')
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE_SIZE, help="Items shown.")] = 50,
) -> None:
    """Items matching a DQL filter (first ``--limit``, by file name)."""
    settings = _settings_or_exit(ctx)
    try:
        query = parse_filter(filter_text)
    except ClientError as exc:
        raise _fail(str(exc)) from exc

    async def work() -> None:
        async with _client(settings) as client:
            found = await client.dataset_by_name(dataset)
            page = await client.query_items(found.id, query, page_size=limit)
        table = Table(title=f"items of {found.name}", title_justify="left")
        for column in ("filename", "id", "mimetype", "bytes", "pixels", "user metadata"):
            table.add_column(column, justify="right" if column == "bytes" else "left")
        for item in page.items:
            system = item.metadata.get("system", {})
            size = f"{system['width']}x{system['height']}" if "width" in system else ""
            user = item.metadata.get("user") or {}
            table.add_row(
                item.filename,
                item.id,
                str(system.get("mimetype", "")),
                f"{system.get('size', 0):,}",
                size,
                json.dumps(user)[:60] if user else "",
            )
        console.print(table)
        console.print(f"{len(page.items)} of {page.total_count} matching items", highlight=False)

    _run(work())


def _settings_or_exit(ctx: typer.Context) -> ClientSettings:
    try:
        return _settings(ctx)
    except ClientError as exc:
        raise _fail(str(exc)) from exc
