"""Models, model services and triggers."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Annotated, Any, cast

import typer
import yaml

from prelabel_client.cli.context import State, fail, show
from prelabel_client.cli.data import filter_of
from prelabel_client.cli.output import Column, Format, OutputOption, emit, fields, info, table
from prelabel_client.models import (
    Action,
    InstallOptions,
    ModelService,
    Operation,
    Scaling,
    ServiceScaling,
    Trigger,
    TriggerSpec,
)
from prelabel_client.sdk import Prelabel

models_app = typer.Typer(help="The catalog and the project's models.", no_args_is_help=True)
services_app = typer.Typer(
    help="Model services: deploy, scale, watch, undeploy.", no_args_is_help=True
)
triggers_app = typer.Typer(
    help="Triggers: predict automatically when matching items change.", no_args_is_help=True
)

ServiceArg = Annotated[str, typer.Argument(help="Model service id.", show_default=False)]
ModelArg = Annotated[str, typer.Argument(help="Model id.")]
TriggerArg = Annotated[str, typer.Argument(help="Trigger id.")]

CATALOG_COLUMNS: builtins.list[Column] = [
    ("name", lambda c: c.name),
    ("version", lambda c: c.version),
    ("input", lambda c: c.input_type),
    ("adapter", lambda c: c.adapter),
    ("labels", lambda c: len(c.labels)),
    ("description", lambda c: c.description),
]
MODEL_COLUMNS: builtins.list[Column] = [
    ("name", lambda m: m.name),
    ("id", lambda m: m.id),
    ("version", lambda m: m.version),
    ("source", lambda m: m.source),
    ("catalog", lambda m: m.catalog_name),
    ("created", lambda m: m.created_at),
]
SERVICE_COLUMNS: builtins.list[Column] = [
    ("name", lambda s: s.name),
    ("id", lambda s: s.id),
    ("model", lambda s: s.model_id),
    ("status", lambda s: s.status),
    ("replicas", lambda s: f"{s.min_replicas}..{s.max_replicas}"),
    ("queue/replica", lambda s: s.queue_per_replica),
    ("instance", lambda s: s.instance_type),
]
DEAD_LETTER_COLUMNS: builtins.list[Column] = [
    ("execution", lambda d: d.execution_id),
    ("item", lambda d: d.item_id),
    ("reason", lambda d: d.reason),
]
TRIGGER_COLUMNS: builtins.list[Column] = [
    ("name", lambda t: t.name),
    ("id", lambda t: t.id),
    ("active", lambda t: t.active),
    ("status", lambda t: t.status),
    ("actions", lambda t: ",".join(t.spec.actions)),
    ("mode", lambda t: t.spec.execution_mode),
    ("service", lambda t: t.spec.operation.service_id),
    ("filter", lambda t: t.spec.filter),
]


def read_document(text: str, what: str) -> Any:
    """Inline JSON, or the path of a JSON or YAML file."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(stripped)
        except ValueError as exc:
            raise fail(f"{what} is not valid JSON: {exc}") from exc
    path = Path(text).expanduser()
    try:
        content = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(f"{what}: cannot read {path}: {exc.strerror}") from exc
    try:
        return yaml.safe_load(content)
    except yaml.YAMLError as exc:
        raise fail(f"{what}: {path} is neither JSON nor YAML: {exc}") from exc


# --------------------------------------------------------------------------- models


@models_app.command("catalog")
def models_catalog(ctx: typer.Context, output: OutputOption = Format.table) -> None:
    """The built-in models a project can install.

    Example: prelabel models catalog
    """
    show(ctx, output, lambda c: c.models.catalog(), lambda f: table("catalog", CATALOG_COLUMNS, f))


@models_app.command("install")
def models_install(
    ctx: typer.Context,
    catalog_name: Annotated[str, typer.Argument(help="Catalog model name.", show_default=False)],
    name: Annotated[str | None, typer.Option(help="The project model's name.")] = None,
    label_map: Annotated[
        str | None, typer.Option(help='Rename labels, JSON: \'{"0": "zero"}\'.')
    ] = None,
    confidence_threshold: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Drop predictions below this.")
    ] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(min=1, help="Items per Triton call.")
    ] = None,
    output: OutputOption = Format.table,
) -> None:
    """Install a catalog model into the project.

    Example: prelabel models install digits-classifier --confidence-threshold 0.5
    """
    mapping = read_document(label_map, "--label-map") if label_map else None
    options = InstallOptions(
        name=name,
        label_map=mapping,
        confidence_threshold=confidence_threshold,
        max_batch_size=max_batch_size,
    )
    show(
        ctx,
        output,
        lambda c: c.models.install(catalog_name, options),
        lambda m: f"installed model [bold]{m.name}[/bold] ({m.id})",
    )


@models_app.command("push")
def models_push(
    ctx: typer.Context,
    directory: Annotated[
        Path,
        typer.Argument(
            help="Triton model directory (config.pbtxt + version folders).",
            exists=True,
            file_okay=False,
            show_default=False,
        ),
    ],
    name: Annotated[str, typer.Option(help="Model name.", show_default=False)],
    spec: Annotated[
        str | None,
        typer.Option(
            help="Input and output adapter: a JSON/YAML file or inline JSON "
            "(default: spec.json / spec.yaml in the directory)."
        ),
    ] = None,
    version: Annotated[str, typer.Option(help="Model version.")] = "1",
    output: OutputOption = Format.table,
) -> None:
    """Bring your own model: push a Triton model directory with its adapter spec.

    Example: prelabel models push ./my-detector --name detector --spec spec.yaml
    """
    if spec is None:
        found = [p for p in ("spec.json", "spec.yaml", "spec.yml") if (directory / p).is_file()]
        if not found:
            raise fail(f"give --spec (no spec.json or spec.yaml in {directory})")
        spec = str(directory / found[0])
    document = read_document(spec, "--spec")
    if not isinstance(document, dict):
        raise fail("--spec must be a mapping (input, adapter, labels ...)")
    show(
        ctx,
        output,
        lambda c: c.models.push(directory, document, name=name, version=version),
        lambda m: f"pushed model [bold]{m.name}[/bold] ({m.id})",
    )


@models_app.command("list")
def models_list(ctx: typer.Context, output: OutputOption = Format.table) -> None:
    """The project's models.

    Example: prelabel models list -o yaml
    """
    show(ctx, output, lambda c: c.models.list(), lambda f: table("models", MODEL_COLUMNS, f))


@models_app.command("get")
def models_get(ctx: typer.Context, model_id: ModelArg, output: OutputOption = Format.table) -> None:
    """One model with its spec.

    Example: prelabel models get mdl_01H...
    """
    show(
        ctx, output, lambda c: c.models.get(model_id), lambda m: fields(f"model {m.name}", list(m))
    )


@models_app.command("delete")
def models_delete(ctx: typer.Context, model_id: ModelArg) -> None:
    """Remove a model no service uses (exit 6 while one does).

    Example: prelabel models delete mdl_01H...
    """
    State.of(ctx).call(lambda c: c.models.delete(model_id))
    info(f"deleted model {model_id}")


# --------------------------------------------------------------------------- services


def _scaling(
    min_replicas: int | None,
    max_replicas: int | None,
    queue_per_replica: int | None,
    cooldown_seconds: float | None,
    concurrency: int | None,
    instance_type: str | None,
) -> Scaling:
    return Scaling(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        queue_per_replica=queue_per_replica,
        cooldown_seconds=cooldown_seconds,
        concurrency=concurrency,
        instance_type=instance_type,
    )


MinOpt = Annotated[
    int | None, typer.Option(min=0, help="Replicas kept when idle (0: scale to zero).")
]
MaxOpt = Annotated[int | None, typer.Option(min=0, help="Most replicas.")]
QueueOpt = Annotated[int | None, typer.Option(min=1, help="Queued requests per replica.")]
CooldownOpt = Annotated[float | None, typer.Option(min=0, help="Idle seconds before scaling down.")]
ConcurrencyOpt = Annotated[int | None, typer.Option(min=1, help="Requests one replica holds.")]
InstanceOpt = Annotated[str | None, typer.Option(help="Instance type (billing rate).")]


@services_app.command("deploy")
def services_deploy(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(help="Model id.", show_default=False)],
    name: Annotated[str | None, typer.Option(help="Service name.")] = None,
    min_replicas: MinOpt = None,
    max_replicas: MaxOpt = None,
    queue_per_replica: QueueOpt = None,
    cooldown_seconds: CooldownOpt = None,
    concurrency: ConcurrencyOpt = None,
    instance_type: InstanceOpt = None,
    wait: Annotated[bool, typer.Option(help="Wait until the service is ready.")] = True,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds --wait waits.")] = 180.0,
    output: OutputOption = Format.table,
) -> None:
    """Deploy a model as a service (0 replicas until work arrives, by default).

    Example: prelabel services deploy mdl_01H... --min-replicas 0 --max-replicas 2
    """
    scaling = _scaling(
        min_replicas, max_replicas, queue_per_replica, cooldown_seconds, concurrency, instance_type
    )

    async def work(client: Prelabel) -> ModelService:
        service = await client.services.deploy(model_id, name, scaling)
        if wait:
            await client.services.wait_ready(service.id, timeout_s=timeout)
            service = await client.services.get(service.id)
        return service

    show(
        ctx, output, work, lambda s: f"deployed service [bold]{s.name}[/bold] ({s.id}): {s.status}"
    )


@services_app.command("list")
def services_list(ctx: typer.Context, output: OutputOption = Format.table) -> None:
    """The project's model services.

    Example: prelabel services list
    """
    show(ctx, output, lambda c: c.services.list(), lambda f: table("services", SERVICE_COLUMNS, f))


@services_app.command("show")
def services_show(
    ctx: typer.Context, service_id: ServiceArg, output: OutputOption = Format.table
) -> None:
    """A service: status, replicas, queue depth, dead letters and cold starts.

    Example: prelabel services show svc_01H... -o json
    """

    async def work(client: Prelabel) -> dict[str, Any]:
        service = await client.services.get(service_id)
        scaling: ServiceScaling | None = None
        try:
            scaling = await client.services.scaling(service_id)
        except Exception:
            scaling = None
        cold = await client.executions.list(service_id=service_id, page_size=100)
        return {
            "service": service,
            "autoscaler": scaling,
            "recent_executions": cold.total_count,
            "recent_cold_starts": sum(1 for e in cold.items if e.cold_start),
        }

    shown = State.of(ctx).call(work)
    service: ModelService = shown["service"]
    scaling: ServiceScaling | None = shown["autoscaler"]
    queue = service.queue
    pairs: builtins.list[tuple[str, Any]] = [
        ("id", service.id),
        ("name", service.name),
        ("model", service.model_id),
        ("status", service.status + (f" ({service.error})" if service.error else "")),
        ("replicas (min..max)", f"{service.min_replicas}..{service.max_replicas}"),
        ("queue per replica", service.queue_per_replica),
        ("cooldown s", service.cooldown_seconds),
        ("concurrency", service.concurrency),
        ("instance type", service.instance_type),
        ("queue", queue.name if queue else None),
        ("queued messages", queue.messages if queue else None),
        ("consumers", queue.consumers if queue else None),
        ("dead letters", queue.dead_letters if queue else None),
        ("live replicas", len(service.replicas or [])),
    ]
    if scaling is not None:
        pairs += [
            ("desired replicas", scaling.desired_replicas),
            ("running replicas", scaling.running_replicas),
            ("last active", scaling.last_active_at),
        ]
    pairs += [
        ("cold starts (last 100 executions)", shown["recent_cold_starts"]),
        ("executions", shown["recent_executions"]),
    ]
    emit(output, shown, lambda: fields(f"service {service.name}", pairs))


@services_app.command("scale")
def services_scale(
    ctx: typer.Context,
    service_id: ServiceArg,
    min_replicas: MinOpt = None,
    max_replicas: MaxOpt = None,
    queue_per_replica: QueueOpt = None,
    cooldown_seconds: CooldownOpt = None,
    concurrency: ConcurrencyOpt = None,
    instance_type: InstanceOpt = None,
    output: OutputOption = Format.table,
) -> None:
    """Change a service's scaling settings (only those given).

    Example: prelabel services scale svc_01H... --max-replicas 4 --cooldown-seconds 30
    """
    scaling = _scaling(
        min_replicas, max_replicas, queue_per_replica, cooldown_seconds, concurrency, instance_type
    )
    show(
        ctx,
        output,
        lambda c: c.services.scale(service_id, scaling),
        lambda s: (
            f"service {s.id}: {s.min_replicas}..{s.max_replicas} replicas, "
            f"{s.queue_per_replica} per replica, cooldown {s.cooldown_seconds:g} s"
        ),
    )


@services_app.command("undeploy")
def services_undeploy(
    ctx: typer.Context, service_id: ServiceArg, output: OutputOption = Format.table
) -> None:
    """Undeploy a service: queued requests are served first, then replicas stop.

    Example: prelabel services undeploy svc_01H...
    """
    show(
        ctx,
        output,
        lambda c: c.services.undeploy(service_id),
        lambda s: f"service {s.id}: {s.status}",
    )


@services_app.command("dead-letters")
def services_dead_letters(
    ctx: typer.Context,
    service_id: ServiceArg,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Most shown.")] = 20,
    output: OutputOption = Format.table,
) -> None:
    """Requests of a service that were dead-lettered, with the reason.

    Example: prelabel services dead-letters svc_01H... --limit 5
    """
    show(
        ctx,
        output,
        lambda c: c.services.dead_letters(service_id, limit),
        lambda f: table(f"dead letters of {service_id}", DEAD_LETTER_COLUMNS, f),
    )


# --------------------------------------------------------------------------- triggers


@triggers_app.command("create")
def triggers_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Trigger name.", show_default=False)],
    service: Annotated[
        str, typer.Option("--service", "-s", help="Model service to run.", show_default=False)
    ],
    action: Annotated[
        builtins.list[str] | None,
        typer.Option(help="Created, Updated, MetadataUpdated, Deleted (repeat)."),
    ] = None,
    mode: Annotated[str, typer.Option(help="Once (per item, ever) or Always.")] = "Once",
    filter_text: Annotated[
        str | None,
        typer.Option(
            "--filter", "-f", help='DQL filter: \'{"metadata.system.mimetype": "image/*"}\'.'
        ),
    ] = None,
    inactive: Annotated[bool, typer.Option(help="Create it paused.")] = False,
    output: OutputOption = Format.table,
) -> None:
    """Create a trigger: run a service on each item event that matches the filter.

    Example: prelabel triggers create digits -s svc_01H... --action Created --filter '{"dir": "/in/**"}'
    """
    actions = action or ["Created"]
    known = ("Created", "Updated", "MetadataUpdated", "Deleted")
    if bad := [a for a in actions if a not in known]:
        raise fail(f"--action must be one of {', '.join(known)}, not {bad[0]!r}")
    if mode not in ("Once", "Always"):
        raise fail(f"--mode must be Once or Always, not {mode!r}")
    spec = TriggerSpec(
        actions=cast(list[Action], actions),
        execution_mode="Once" if mode == "Once" else "Always",
        filter=filter_of(filter_text),
        operation=Operation(service_id=service),
    )
    show(
        ctx,
        output,
        lambda c: c.triggers.create(name, spec, active=not inactive),
        lambda t: f"created trigger [bold]{t.name}[/bold] ({t.id})",
    )


@triggers_app.command("list")
def triggers_list(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Option("--service", "-s", help="Of this service.")] = None,
    output: OutputOption = Format.table,
) -> None:
    """The project's triggers.

    Example: prelabel triggers list -s svc_01H...
    """
    show(
        ctx,
        output,
        lambda c: c.triggers.list(service),
        lambda f: table("triggers", TRIGGER_COLUMNS, f),
    )


@triggers_app.command("get")
def triggers_get(
    ctx: typer.Context, trigger_id: TriggerArg, output: OutputOption = Format.table
) -> None:
    """One trigger.

    Example: prelabel triggers get trg_01H... -o yaml
    """
    show(
        ctx,
        output,
        lambda c: c.triggers.get(trigger_id),
        lambda t: table("trigger", TRIGGER_COLUMNS, [t]),
    )


def _switch(ctx: typer.Context, trigger_id: str, verb: str, output: Format) -> None:
    async def work(client: Prelabel) -> Trigger:
        if verb == "pause":
            return await client.triggers.pause(trigger_id)
        return await client.triggers.resume(trigger_id)

    show(ctx, output, work, lambda t: f"trigger {t.name}: active={t.active}")


@triggers_app.command("pause")
def triggers_pause(
    ctx: typer.Context, trigger_id: TriggerArg, output: OutputOption = Format.table
) -> None:
    """Stop a trigger from firing.

    Example: prelabel triggers pause trg_01H...
    """
    _switch(ctx, trigger_id, "pause", output)


@triggers_app.command("resume")
def triggers_resume(
    ctx: typer.Context, trigger_id: TriggerArg, output: OutputOption = Format.table
) -> None:
    """Let a paused trigger fire again.

    Example: prelabel triggers resume trg_01H...
    """
    _switch(ctx, trigger_id, "resume", output)


@triggers_app.command("delete")
def triggers_delete(ctx: typer.Context, trigger_id: TriggerArg) -> None:
    """Delete a trigger (its executions stay).

    Example: prelabel triggers delete trg_01H...
    """
    State.of(ctx).call(lambda c: c.triggers.delete(trigger_id))
    info(f"deleted trigger {trigger_id}")
