"""Sign in with a project API key, sign out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from console_service.session import Session, session_of, set_session
from console_service.web import clients_of, redirect, render
from prelabel_client.errors import ApiError, AuthError

router = APIRouter()


def _safe_next(target: str | None) -> str:
    # Only paths of this console: never //host or a scheme (no open redirect).
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/datasets"


@router.get("/")
async def home(request: Request) -> Response:
    return redirect(request, "/datasets" if session_of(request).signed_in else "/login")


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login")
async def login(
    request: Request,
    api_key: Annotated[str, Form(max_length=500)],
    next: Annotated[str, Form(max_length=2000)] = "/datasets",
) -> Response:
    key = api_key.strip()
    error = None
    if not key:
        error = "enter a project API key"
    else:
        sdk = clients_of(request).for_key(key)
        try:
            project_id = await sdk.whoami()
        except AuthError:
            error = "this key is not a valid project API key"
        except ApiError as exc:
            error = f"the dataset service could not check the key: {exc.message}"
        finally:
            await sdk.aclose()
    if error is not None:
        return render(request, "login.html", 401, next=_safe_next(next), error=error)
    set_session(request, session_of(request).sign_in(key, project_id))
    return redirect(request, _safe_next(next))


@router.post("/logout")
async def logout(request: Request) -> Response:
    set_session(request, Session.anonymous())
    return redirect(request, "/login")
