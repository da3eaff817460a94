"""What every page shares: templates, the signed-in dependency, CSRF, error pages."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from console_service.clients import Clients
from console_service.domain import FormError
from console_service.session import CSRF_FIELD, CSRF_HEADER, Session, session_of
from prelabel_client.errors import (
    ApiError,
    AuthError,
    ClientError,
    NotFoundError,
    ServiceUnreachableError,
)
from prelabel_client.retry import RetriesExhaustedError
from prelabel_client.sdk import Prelabel

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
PARTIAL_HEADER = "x-console-partial"
"""Sent by console.js with fetch-and-swap requests: answer a fragment, not a page."""


class NotSignedInError(Exception):
    """The request needs a signed-in session."""


class CsrfError(Exception):
    """A state-changing request without this session's CSRF token."""


def is_partial(request: Request) -> bool:
    """Whether the request came from console.js for a fragment."""
    return request.headers.get(PARTIAL_HEADER) == "1"


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A template with the session's CSRF token and project in its context."""
    session = session_of(request)
    context |= {
        "csrf": session.csrf,
        "project_id": session.project_id,
        "signed_in": session.signed_in,
    }
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    # Pages show project data: never cached by anything in between.
    response.headers["Cache-Control"] = "no-store"
    return response


def redirect(request: Request, path: str) -> RedirectResponse:
    """303 to a console path (below the root path)."""
    return RedirectResponse(f"{request.scope.get('root_path', '')}{path}", status_code=303)


def clients_of(request: Request) -> Clients:
    """The app's client factory."""
    clients: Clients = request.app.state.clients
    return clients


async def check_csrf(request: Request) -> None:
    """Refuse an unsafe request whose form field or header is not the session's token."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    token = request.headers.get(CSRF_HEADER)
    if token is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            value = (await request.form()).get(CSRF_FIELD)
            token = value if isinstance(value, str) else None
    if not session_of(request).csrf_matches(token):
        raise CsrfError


def signed_in_session(request: Request) -> Session:
    """The session, which must hold a project key."""
    session = session_of(request)
    if not session.signed_in:
        raise NotSignedInError
    return session


async def client(
    session: Annotated[Session, Depends(signed_in_session)], request: Request
) -> AsyncIterator[Prelabel]:
    """An SDK client with the signed-in key, closed after the request."""
    assert session.api_key is not None
    sdk = clients_of(request).for_key(session.api_key)
    try:
        yield sdk
    finally:
        await sdk.aclose()


Client = Annotated[Prelabel, Depends(client)]


@dataclass(frozen=True)
class Problem:
    """An error as a page shows it."""

    status: int
    title: str
    message: str


def problem_of(exc: Exception) -> Problem:
    """The page for an SDK error: the service's own message, its status where it fits."""
    if isinstance(exc, RetriesExhaustedError):
        exc = exc.last if isinstance(exc.last, Exception) else exc
    if isinstance(exc, ServiceUnreachableError):
        return Problem(502, "A service does not answer", str(exc))
    if isinstance(exc, NotFoundError):
        return Problem(404, "Not found", exc.message)
    if isinstance(exc, ApiError):
        if exc.status_code >= 500 or exc.status_code == 429:
            return Problem(502, f"The {exc.service or 'service'} failed", exc.message)
        return Problem(exc.status_code, "Refused", exc.message)
    if isinstance(exc, ClientError | FormError):
        return Problem(400, "Refused", str(exc))
    return Problem(500, "Something broke", type(exc).__name__)


def error_response(request: Request, exc: Exception) -> Response:
    """An error page (or fragment) for any failure a route let through."""
    # 401: the key is gone (revoked, or the session outlived it); 403 is a refusal.
    if isinstance(exc, NotSignedInError) or (isinstance(exc, AuthError) and exc.status_code == 401):
        if is_partial(request):
            return HTMLResponse('<p class="error">Signed out: sign in again.</p>', status_code=401)
        target = request.url.path if request.method == "GET" else "/"
        return redirect(request, f"/login?next={quote(target)}")
    if isinstance(exc, CsrfError):
        problem = Problem(403, "Refused", "the form's CSRF token is missing or wrong: reload it")
    else:
        problem = problem_of(exc)
        if problem.status >= 500:
            log.warning("page failed", extra={"path": request.url.path, "error": problem.message})
    template = "_problem.html" if is_partial(request) else "problem.html"
    return render(request, template, problem.status, problem=problem)
