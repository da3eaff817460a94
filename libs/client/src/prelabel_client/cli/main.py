"""The ``prelabel`` command: the daily path of prelabel from a terminal."""

from __future__ import annotations

import builtins
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer

from prelabel_client.cli import config as config_file
from prelabel_client.cli.context import EXIT_CODES, State, fail
from prelabel_client.cli.data import (
    api_keys_app,
    datasets_app,
    export,
    items_app,
    projects_app,
)
from prelabel_client.cli.dead_letters import dead_letters_app
from prelabel_client.cli.output import Format, OutputOption, emit, fields, info, table
from prelabel_client.cli.pipelines import pipelines_app
from prelabel_client.cli.review import billing_app, tasks_app
from prelabel_client.cli.runs import executions_app, predict
from prelabel_client.cli.serving import models_app, services_app, triggers_app
from prelabel_client.cli.upload import upload
from prelabel_client.endpoints import SERVICES
from prelabel_client.errors import ClientError
from prelabel_client.sdk import Prelabel

EXIT_TABLE = "\n\n".join(f"{code}: {meaning}" for code, meaning in EXIT_CODES)

app = typer.Typer(
    name="prelabel",
    help="Pre-label data with deployed models: datasets, uploads, models, services, "
    "triggers, predictions, review, export and billing.",
    epilog=f"Exit status by error class:\n\n{EXIT_TABLE}",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
profiles_app = typer.Typer(help="The profiles of the configuration file.", no_args_is_help=True)

app.add_typer(projects_app, name="projects")
app.add_typer(api_keys_app, name="api-keys")
app.add_typer(datasets_app, name="datasets")
app.add_typer(items_app, name="items")
app.command("upload")(upload)
app.add_typer(models_app, name="models")
app.add_typer(services_app, name="services")
app.add_typer(triggers_app, name="triggers")
app.add_typer(pipelines_app, name="pipelines")
app.command("predict")(predict)
app.add_typer(executions_app, name="executions")
app.add_typer(tasks_app, name="tasks")
app.command("export")(export)
app.add_typer(billing_app, name="billing")
app.add_typer(dead_letters_app, name="dead-letters")
app.add_typer(profiles_app, name="profiles")


def _version() -> str:
    try:
        return version("prelabel-client")
    except PackageNotFoundError:
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"prelabel {_version()}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(help="Base URL of the services (env PRELABEL_URL).", show_default=False),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(help="Project API key (env PRELABEL_API_KEY).", show_default=False)
    ] = None,
    admin_key: Annotated[
        str | None,
        typer.Option(
            help="Admin key, for projects and api-keys (env PRELABEL_ADMIN_KEY).",
            show_default=False,
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            "-p",
            help="Profile of the config file (env PRELABEL_PROFILE).",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option(help="Show tracebacks instead of one-line errors.")
    ] = False,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Pre-label data with deployed models.

    Example: prelabel login --url https://prelabel.example.com --api-key pk_...
    """
    ctx.obj = State(url=url, api_key=api_key, admin_key=admin_key, profile=profile, debug=debug)


# --------------------------------------------------------------------------- login


@app.command()
def login(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option(help="Base URL (the proxy in front of every service).")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(help="Project API key (prompted for when left out).")
    ] = None,
    service_url: Annotated[
        builtins.list[str] | None,
        typer.Option(help="SERVICE=URL: one service somewhere else (repeat; development)."),
    ] = None,
    admin_key: Annotated[str | None, typer.Option(help="Also keep an admin key.")] = None,
    verify: Annotated[bool, typer.Option(help="Check the key with the dataset service.")] = True,
) -> None:
    """Keep a URL and an API key in a profile of the per-user config file (mode 0600).

    The profile (--profile, default 'default') becomes the current one.

    Example: prelabel --profile staging login --url https://staging.example.com --api-key pk_...
    """
    state = State.of(ctx)
    try:
        services = config_file.parse_service_urls(service_url or [])
    except ClientError as exc:
        raise fail(str(exc)) from exc
    base = url or state.url
    if not base and not services:
        raise fail("give --url (or --service-url SERVICE=URL for each service)")
    key = api_key or state.api_key or typer.prompt("API key", hide_input=True, err=True)
    profile = config_file.Profile(
        url=base, api_key=key, admin_key=admin_key or state.admin_key, service_urls=services
    )
    if verify:
        check = State(debug=state.debug, environ={"PRELABEL_CONFIG": "/nonexistent/prelabel"})

        async def whoami(client: Prelabel) -> str:
            return await client.whoami()

        values = profile.settings_values()
        project_id = check.call(whoami, **values)
        profile = profile.model_copy(update={"project_id": project_id})
    path = state.config_path
    name = (
        state.profile_name()
        if state.profile
        else (state.environ.get("PRELABEL_PROFILE") or "default")
    )

    def save() -> None:
        loaded = config_file.load(path)
        loaded.profiles[name] = profile
        loaded.current = name
        config_file.save(path, loaded)

    state.guarded(save)
    project = f" (project {profile.project_id})" if profile.project_id else ""
    info(f"logged in as profile [bold]{name}[/bold]{project}; saved in {path}")


@app.command()
def logout(ctx: typer.Context) -> None:
    """Forget the current profile (or --profile's) from the config file.

    Example: prelabel --profile staging logout
    """
    state = State.of(ctx)
    path = state.config_path

    def remove() -> str:
        loaded = config_file.load(path)
        name = state.profile or state.environ.get("PRELABEL_PROFILE") or loaded.current
        if loaded.profiles.pop(name, None) is None:
            raise ClientError(f"no profile {name!r} in {path}")
        if loaded.current == name:
            loaded.current = next(iter(loaded.profiles), config_file.DEFAULT_PROFILE)
        config_file.save(path, loaded)
        return name

    info(f"removed profile {state.guarded(remove)}")


@app.command()
def whoami(ctx: typer.Context, output: OutputOption = Format.table) -> None:
    """The project of the API key in use, the profile and every service's URL.

    Example: prelabel whoami -o json
    """
    state = State.of(ctx)
    settings = state.guarded(state.settings)

    async def work(client: Prelabel) -> str:
        return await client.whoami()

    project_id = state.call(work)
    shown: dict[str, Any] = {
        "project_id": project_id,
        "profile": state.guarded(state.profile_name),
        "config": str(state.config_path),
        "urls": settings.endpoints.as_dict(),
    }
    emit(
        output,
        shown,
        lambda: fields(
            "whoami",
            [(k, v) for k, v in shown.items() if k != "urls"]
            + [(f"{s} URL", settings.endpoints.of(s)) for s in SERVICES],
        ),
    )


@profiles_app.command("list")
def profiles_list(ctx: typer.Context, output: OutputOption = Format.table) -> None:
    """The profiles (keys are not shown).

    Example: prelabel profiles list
    """
    state = State.of(ctx)
    loaded = state.guarded(lambda: config_file.load(state.config_path))
    rows = [
        {
            "name": name,
            "current": name == loaded.current,
            "url": p.url,
            "service_urls": p.service_urls,
            "project_id": p.project_id,
        }
        for name, p in loaded.profiles.items()
    ]
    columns = [(h, lambda r, h=h: r[h]) for h in ("name", "current", "url", "project_id")]
    emit(output, rows, lambda: table(f"profiles in {state.config_path}", columns, rows))


@profiles_app.command("use")
def profiles_use(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Profile name.")]
) -> None:
    """Make a profile the current one.

    Example: prelabel profiles use staging
    """
    state = State.of(ctx)
    path = state.config_path

    def use() -> None:
        loaded = config_file.load(path)
        if name not in loaded.profiles:
            raise ClientError(f"no profile {name!r} in {path}")
        loaded.current = name
        config_file.save(path, loaded)

    state.guarded(use)
    info(f"current profile: {name}")
