"""Observability shared by every service: JSON logs carrying event and correlation
ids, Prometheus metrics helpers, and the ``/healthz`` ``/readyz`` ``/metrics`` routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterator

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

event_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("event_id", default=None)
correlation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)

ReadinessCheck = Callable[[], Awaitable[None]]


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self._service
        record.event_id = event_id_var.get()
        record.correlation_id = correlation_id_var.get()
        return True


def configure_logging(service: str, level: str = "INFO") -> None:
    """Log JSON lines to stderr with ``service``, ``event_id`` and ``correlation_id``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
        )
    )
    handler.addFilter(_ContextFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


@contextlib.contextmanager
def log_context(event_id: str | None, correlation_id: str | None = None) -> Iterator[None]:
    """Attach the message's ids to every log line written inside the block."""
    t1 = event_id_var.set(event_id)
    t2 = correlation_id_var.set(correlation_id)
    try:
        yield
    finally:
        event_id_var.reset(t1)
        correlation_id_var.reset(t2)


def metric_name(service: str, what: str) -> str:
    """``prelabel_<service>_<what>`` with the service name made metric-safe."""
    return f"prelabel_{service.replace('-', '_')}_{what}"


class ServiceMetrics:
    """Metrics every service exposes; services add their own beside these."""

    def __init__(self, service: str) -> None:
        self.messages = Counter(
            metric_name(service, "messages_handled_total"),
            "Broker messages handled, by handler and outcome (ok, duplicate, dead_lettered, error).",
            ["handler", "outcome"],
        )
        self.handler_seconds = Histogram(
            metric_name(service, "handler_duration_seconds"),
            "Time spent in a broker handler.",
            ["handler"],
        )
        self.http_seconds = Histogram(
            metric_name(service, "http_request_duration_seconds"),
            "HTTP request latency by route and status.",
            ["method", "route", "status"],
        )


def health_router(checks: dict[str, ReadinessCheck], *, timeout: float = 2.0) -> APIRouter:
    """``/healthz`` (process alive), ``/readyz`` (every dependency answers), ``/metrics``."""
    router = APIRouter(tags=["ops"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), timeout)
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"failed: {type(exc).__name__}: {exc}"[:300]
        ready = all(v == "ok" for v in results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": results},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


class TimingMiddleware:
    """ASGI middleware recording HTTP latency by route template (not raw path: bounded
    labels).

    Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which wraps every request
    and response body in extra tasks and streams: uploads go through here.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # The router writes the matched route into the scope it was given.
            template = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.http_seconds.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - start
            )
