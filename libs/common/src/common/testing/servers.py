"""Run a service app inside the test's event loop: on a real loopback port, or in
process behind an ASGI client with a probe on its events exchange."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence

import httpx
import uvicorn
from fastapi import FastAPI

from common.service import runtime_of
from common.testing.broker import EventProbe, delete_names, probe_exchange


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serve_app(app: FastAPI, port: int | None = None) -> AsyncIterator[str]:
    """Serve ``app`` (lifespan included) over HTTP; yield its base URL."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="on",
            # Without a bound, shutdown waits for every open connection: a request a test
            # abandoned mid-body (a refused streaming upload) held a teardown for good.
            timeout_graceful_shutdown=5,
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("server exited during start-up")
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def app_in_process(
    app: FastAPI,
    *,
    amqp_url: str,
    events_exchange: str,
    base_url: str,
    exchanges: Sequence[str] = (),
    timeout: float = 5.0,
) -> AsyncIterator[tuple[httpx.AsyncClient, EventProbe]]:
    """Start ``app`` (its lifespan: pool, broker, relay) in this event loop; yield an HTTP
    client that calls it in process and a probe collecting what it publishes on
    ``events_exchange``.

    Afterwards the app's queues (with their dead-letter queues), ``events_exchange`` and
    ``exchanges`` are deleted, even when the test failed: quorum queues hold files open
    on the broker.
    """
    queues: list[str] = []
    try:
        async with (
            probe_exchange(amqp_url, events_exchange) as events,
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=base_url, timeout=timeout
            ) as http,
        ):
            try:
                yield http, events
            finally:
                queues = list(runtime_of(app).consumer_queues)
    finally:
        await delete_names(
            amqp_url,
            [*queues, *(f"{q}.dlq" for q in queues)],
            [events_exchange, *exchanges],
        )
