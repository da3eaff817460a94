"""Errors the client raises, with the server's own message.

Every answer with an error status becomes an :class:`ApiError` subclass picked by
the status (:class:`AuthError`, :class:`NotFoundError`, :class:`ConflictError`,
:class:`ValidationError`, :class:`ServerError`); a service that cannot be reached
raises :class:`ServiceUnreachableError`, which names the URL. The CLI maps each
class to an exit status (``exit_code``).
"""

from __future__ import annotations

from typing import Any

import httpx


class ExitCode:
    """The CLI's exit statuses, one per class of failure."""

    OK = 0
    USAGE = 2
    AUTH = 4
    NOT_FOUND = 5
    CONFLICT = 6
    SERVER = 7
    PARTIAL = 8


class ClientError(Exception):
    """Something the caller must fix (bad options, missing configuration, bad metadata)."""

    exit_code = ExitCode.USAGE


class MissingError(ClientError):
    """A thing named by the caller (a dataset by name) does not exist."""

    exit_code = ExitCode.NOT_FOUND


class PartialFailureError(ClientError):
    """Some of the work failed (files of an upload, executions of a batch)."""

    exit_code = ExitCode.PARTIAL


class ApiError(Exception):
    """A service answered with an error status; ``message`` is its explanation."""

    exit_code = ExitCode.SERVER

    def __init__(
        self,
        status_code: int,
        message: str,
        retry_after: float | None = None,
        *,
        service: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.retry_after = retry_after
        self.service = service
        """The service that answered (``dataset``, ``billing`` ...), when known."""
        self.url = url
        """The URL of the request, when known."""

    @classmethod
    def from_response(cls, response: httpx.Response, service: str | None = None) -> ApiError:
        """The error for a response, of the class its status calls for, keeping the
        server's explanation."""
        kind = error_class(response.status_code)
        url = str(response.request.url) if _has_request(response) else None
        return kind(
            response.status_code,
            error_message(response),
            _retry_after(response),
            service=service,
            url=url,
        )


class AuthError(ApiError):
    """401 or 403: the key is missing, unknown, or not allowed here."""

    exit_code = ExitCode.AUTH


class NotFoundError(ApiError):
    """404: no such thing in the caller's project."""

    exit_code = ExitCode.NOT_FOUND


class ConflictError(ApiError):
    """409: the change clashes with existing data or the current state."""

    exit_code = ExitCode.CONFLICT


class ValidationError(ApiError):
    """Any other 4xx: the request itself was refused (bad filter, bad body, too large)."""

    exit_code = ExitCode.USAGE


class ServerError(ApiError):
    """5xx or 429: the service failed or is busy; another try may work."""

    exit_code = ExitCode.SERVER


class ServiceUnreachableError(ServerError):
    """No answer at all: refused connection, timeout, dropped connection."""

    def __init__(self, service: str, url: str, cause: BaseException) -> None:
        reason = str(cause).strip() or type(cause).__name__
        super().__init__(0, f"{type(cause).__name__}: {reason}", service=service, url=url)
        self.cause = cause
        self.args = (f"cannot reach the {service} service at {url} ({self.message})",)

    def __str__(self) -> str:
        return str(self.args[0])


def error_class(status_code: int) -> type[ApiError]:
    """The :class:`ApiError` subclass for an HTTP error status."""
    if status_code in (401, 403):
        return AuthError
    if status_code == 404:
        return NotFoundError
    if status_code == 409:
        return ConflictError
    if status_code == 429 or status_code >= 500:
        return ServerError
    if 400 <= status_code < 500:
        return ValidationError
    return ApiError


def exit_code_of(exc: BaseException) -> int:
    """The CLI's exit status for an error (7 for anything unexpected)."""
    code = getattr(exc, "exit_code", ExitCode.SERVER)
    return code if isinstance(code, int) else ExitCode.SERVER


def error_message(response: httpx.Response) -> str:
    """The human part of an error response.

    The services answer ``{"detail": "..."}``, ``{"detail": {"message": ...,
    "path": ...}}`` (DQL) or FastAPI's list of validation errors; anything else
    (a proxy's HTML page) is shown as text, shortened.
    """
    try:
        body: Any = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:300] if text else response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict):
        message = str(detail.get("message") or detail.get("error") or detail)
        path = detail.get("path")
        return f"{message} (at {path})" if path else message
    if isinstance(detail, list):
        parts = []
        for entry in detail:
            if isinstance(entry, dict):
                where = ".".join(str(part) for part in entry.get("loc", ()))
                parts.append(f"{where}: {entry.get('msg', entry)}" if where else str(entry))
            else:
                parts.append(str(entry))
        return "; ".join(parts)
    return str(detail)


def _has_request(response: httpx.Response) -> bool:
    try:
        response.request  # noqa: B018 - raises when the response was built by hand
    except RuntimeError:
        return False
    return True


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        # The HTTP-date form is rare from APIs; backoff alone is fine then.
        return None
