"""What every command shares: where the services are, the key, and how errors end.

Configuration, strongest first: command-line options (``--url``, ``--api-key``),
the profile named by ``--profile`` (or ``PRELABEL_PROFILE``), ``PRELABEL_*``
environment variables, then the current profile of the configuration file.

Every failure ends as one line on stderr and an exit status by its class (see
:data:`EXIT_CODES`); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import typer
from pydantic import ValidationError as PydanticValidationError
from rich.markup import escape

from prelabel_client.cli import config as config_file
from prelabel_client.cli.output import Format, emit, err_console
from prelabel_client.errors import ApiError, ClientError, ExitCode, ServiceUnreachableError
from prelabel_client.sdk import Prelabel
from prelabel_client.settings import ClientSettings

T = TypeVar("T")

INTERRUPTED = 130
UNEXPECTED = 1

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (ExitCode.OK, "success"),
    (UNEXPECTED, "unexpected error (a bug: rerun with --debug and report it)"),
    (
        ExitCode.USAGE,
        "usage: bad option, filter, file or configuration; the service refused the request (400, 413, 415, 422)",
    ),
    (
        ExitCode.AUTH,
        "auth: no API key (or no admin key for projects and api-keys), or the key is wrong or not allowed (401, 403)",
    ),
    (
        ExitCode.NOT_FOUND,
        "not found: no such dataset, item, service, task ... in the project (404)",
    ),
    (ExitCode.CONFLICT, "conflict: clashes with existing data or the current state (409)"),
    (
        ExitCode.SERVER,
        "server or connection: a service failed (5xx, 429), cannot be reached, or a wait timed out",
    ),
    (ExitCode.PARTIAL, "partial failure: some files of an upload or executions of a batch failed"),
    (INTERRUPTED, "interrupted (Ctrl-C)"),
)
"""The exit statuses, as ``--help`` and the README list them."""


class MissingKeyError(ClientError):
    """No API key anywhere: not logged in."""

    exit_code = ExitCode.AUTH


@dataclass
class State:
    """The global options of one ``prelabel`` run (``ctx.obj``)."""

    url: str | None = None
    api_key: str | None = None
    admin_key: str | None = None
    profile: str | None = None
    debug: bool = False
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    @classmethod
    def of(cls, ctx: typer.Context) -> State:
        """The state of this run (defaults when a command runs without the callback)."""
        root = ctx.find_root()
        if not isinstance(root.obj, State):
            root.obj = cls()
        return root.obj

    @property
    def config_path(self) -> Path:
        """The configuration file."""
        return config_file.config_path(self.environ)

    def profile_name(self) -> str:
        """The profile this run reads (and ``login`` writes)."""
        chosen = self.profile or self.environ.get("PRELABEL_PROFILE")
        return chosen or config_file.load(self.config_path).current

    def settings(self, *, need_key: bool = True, **overrides: Any) -> ClientSettings:
        """The client settings of this run (see the module docstring for the order)."""
        loaded = config_file.load(self.config_path)
        explicit = self.profile or self.environ.get("PRELABEL_PROFILE")
        name = explicit or loaded.current
        profile = loaded.profiles.get(name)
        if explicit and profile is None:
            raise ClientError(
                f"no profile {name!r} in {self.config_path} (run `prelabel login --profile {name}`)"
            )
        from_profile = profile.settings_values() if profile is not None else {}
        from_env = {
            name: self.environ[f"PRELABEL_{name.upper()}"]
            for name in ClientSettings.model_fields
            if f"PRELABEL_{name.upper()}" in self.environ
        }
        # The environment beats the current profile, not a profile asked for by name.
        values: dict[str, Any] = (
            {**from_env, **from_profile} if explicit else {**from_profile, **from_env}
        )
        cli = {"url": self.url, "api_key": self.api_key, "admin_key": self.admin_key, **overrides}
        values.update({k: v for k, v in cli.items() if v is not None})
        if not need_key and "api_key" not in values:
            values["api_key"] = "-"
        if need_key and "api_key" in values and not str(values["api_key"]).strip():
            raise MissingKeyError(
                "the API key is empty: run `prelabel login`, set PRELABEL_API_KEY, or pass --api-key"
            )
        try:
            return ClientSettings(**values)
        except PydanticValidationError as exc:
            raise _settings_error(exc) from exc

    def client(self, **overrides: Any) -> Prelabel:
        """An SDK client for this run."""
        return Prelabel.from_settings(self.settings(**overrides))

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` to its end; any failure becomes one line and an exit status."""
        return guard(self.debug, lambda: asyncio.run(work))

    def call(self, work: Callable[[Prelabel], Awaitable[T]], **overrides: Any) -> T:
        """Run ``work`` with a client that is closed afterwards."""

        async def go() -> T:
            async with self.client(**overrides) as client:
                return await work(client)

        return self.guarded(lambda: asyncio.run(go()))

    def guarded(self, body: Callable[[], T]) -> T:
        """``body()``, failures turned into one line and an exit status."""
        return guard(self.debug, body)


def show(
    ctx: typer.Context,
    output: Format,
    work: Callable[[Prelabel], Awaitable[T]],
    render: Callable[[T], Any],
) -> T:
    """Run ``work`` with a client and print its answer: as ``render(answer)`` shows it (a
    table or a line) or as JSON/YAML; the answer is returned."""
    answer = State.of(ctx).call(work)
    emit(output, answer, lambda: render(answer))
    return answer


def _settings_error(exc: PydanticValidationError) -> ClientError:
    problems = []
    missing_key = False
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "?"
        if name == "api_key" and error["type"] == "missing":
            missing_key = True
        else:
            problems.append(f"PRELABEL_{name.upper()}: {error['msg']}")
    if missing_key and not problems:
        return MissingKeyError(
            "PRELABEL_API_KEY is not set: run `prelabel login`, set it, or pass --api-key"
        )
    return ClientError("; ".join(problems))


def describe(exc: BaseException) -> str:
    """The one line a user sees for an error."""
    if isinstance(exc, ServiceUnreachableError):
        return str(exc)
    if isinstance(exc, ApiError):
        who = f"{exc.service} service" if exc.service else "service"
        where = f" ({exc.url})" if exc.url else ""
        return f"{who} answered HTTP {exc.status_code}: {exc.message}{where}"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return f"bad service URL ({exc}): check --url, PRELABEL_URL or the profile"
    if isinstance(exc, httpx.HTTPError):
        return f"HTTP failure: {type(exc).__name__}: {exc}"
    if isinstance(exc, TimeoutError):
        return str(exc) or "timed out"
    return str(exc) or type(exc).__name__


def exit_code(exc: BaseException) -> int:
    """The exit status of an error class."""
    if isinstance(exc, ApiError | ClientError):
        return int(exc.exit_code)
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ExitCode.USAGE
    if isinstance(exc, httpx.HTTPError | TimeoutError | ConnectionError):
        return ExitCode.SERVER
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    return UNEXPECTED


def fail(message: str, code: int = ExitCode.USAGE) -> typer.Exit:
    """Print ``error: message`` and give the exit to raise."""
    err_console.print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def guard(debug: bool, body: Callable[[], T]) -> T:
    """Run ``body``; errors as one line and an exit status (re-raised with ``--debug``)."""
    try:
        return body()
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt as exc:
        if debug:
            raise
        raise fail("interrupted", INTERRUPTED) from exc
    except Exception as exc:
        if debug:
            raise
        code = exit_code(exc)
        message = describe(exc)
        if code == UNEXPECTED:
            message = f"unexpected {type(exc).__name__}: {message} (rerun with --debug for details)"
        raise fail(message, code) from exc
