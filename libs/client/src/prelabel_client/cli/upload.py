"""``prelabel upload``: files and folders into a dataset, concurrently, with a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer
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

from prelabel_client.cli.context import State, fail
from prelabel_client.cli.output import Format, OutputOption, console, emit, err_console
from prelabel_client.client import PrelabelClient
from prelabel_client.errors import ClientError
from prelabel_client.plan import LocalFile, collect_files, parse_metadata
from prelabel_client.settings import ClientSettings
from prelabel_client.summary import FileOutcome, UploadSummary
from prelabel_client.uploader import Uploader, UploadProgress

MAX_FAILED_ROWS = 50
"""Failed files listed one by one; beyond this the reasons are only counted."""


def _client(settings: ClientSettings) -> PrelabelClient:
    return PrelabelClient(
        settings.endpoints.dataset,
        settings.api_key.get_secret_value(),
        timeout_s=settings.timeout_s,
        max_connections=max(settings.concurrency * 2, 10),
    )


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
    output: OutputOption = Format.table,
    as_json: Annotated[bool, typer.Option("--json", hidden=True, help="Same as -o json.")] = False,
) -> None:
    """Upload files and folders into a dataset; content already in a directory is skipped.

    Exit status 8 when some files failed (each listed with the service's reason).

    Example: prelabel upload ./images -d photos --dir /batch1 --metadata '{"camera": "a7"}'
    """
    state = State.of(ctx)
    if as_json:
        output = Format.json
    if via not in {"http", "broker"}:
        raise fail(f"--via must be http or broker, not {via!r}")
    try:
        user_metadata = parse_metadata(metadata)
        files = collect_files(paths, remote_dir)
    except ClientError as exc:
        raise fail(str(exc), exc.exit_code) from exc
    settings = state.guarded(lambda: state.settings(concurrency=concurrency))
    if not files:
        err_console.print("nothing to upload: the folders given hold no files")
    summary = state.run(
        _upload(
            settings,
            files,
            dataset,
            user_metadata,
            "broker" if via == "broker" else "http",
            create_dataset=create_dataset,
            wait_timeout=wait_timeout,
            show_progress=output is Format.table,
        )
    )
    if output is Format.table:
        _print_summary(summary)
    else:
        emit(output, _summary_json(summary))
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
