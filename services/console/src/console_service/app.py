"""Composition root of the console: the session middleware, the SDK clients (built in
the lifespan), the pages, static files, error pages and the health routes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from common.http_errors import NulGuard
from common.observability import TimingMiddleware, health_router
from common.service import service_metrics
from console_service.clients import Clients
from console_service.domain import FormError
from console_service.pages import auth, billing, datasets, models, pipelines, review
from console_service.session import SessionCodec, SessionMiddleware
from console_service.settings import Settings
from console_service.web import HERE, CsrfError, NotSignedInError, check_csrf, error_response
from prelabel_client.errors import ApiError, ClientError
from prelabel_client.retry import RetriesExhaustedError


def create_app(settings: Settings) -> FastAPI:
    """Build the console app."""
    metrics = service_metrics("console")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clients = Clients(settings.endpoints(), timeout_s=settings.request_timeout_s)
        app.state.clients = clients
        app.state.settings = settings
        try:
            yield
        finally:
            await clients.aclose()

    async def dataset_service() -> None:
        # Sign-in and every page need the dataset service (keys are checked there).
        async with httpx.AsyncClient(timeout=2.0) as http:
            answer = await http.get(f"{settings.endpoints().dataset}/healthz")
            answer.raise_for_status()

    # No OpenAPI pages: the console is a web UI, its routes are no API to document.
    app = FastAPI(
        title="prelabel console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    secret = settings.session_secret.get_secret_value() if settings.session_secret else None
    app.add_middleware(
        SessionMiddleware,
        codec=SessionCodec(secret, settings.session_max_age_seconds),
        secure=settings.cookie_secure,
    )
    app.add_middleware(TimingMiddleware, metrics=metrics)
    # As in the services: /metrics only for the scraper on the internal network (404 to a
    # request that came through the proxy), and NUL characters refused.
    app.add_middleware(NulGuard)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        )
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    async def failed(request: Request, exc: Exception) -> Response:
        return error_response(request, exc)

    for kind in (
        NotSignedInError,
        CsrfError,
        ApiError,
        ClientError,
        FormError,
        RetriesExhaustedError,
    ):
        app.add_exception_handler(kind, failed)

    app.include_router(health_router({"dataset": dataset_service}))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    pages = APIRouter(dependencies=[Depends(check_csrf)])
    for module in (auth, datasets, models, pipelines, review, billing):
        pages.include_router(module.router)
    app.include_router(pages)
    return app
