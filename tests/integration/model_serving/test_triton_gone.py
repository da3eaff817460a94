"""Triton going away under the control client: each way it can go is an outage
(:class:`TritonUnavailableError`, retried by the replica until Triton is back), never a
model that cannot load and never an exception nobody expects.

The peers are real sockets on loopback: one that refuses connections (nothing listens),
and one that accepts a request and dies before answering, as a Triton killed with SIGKILL
in the middle of a model load does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from common.testing.servers import free_port
from model_serving_service.adapters.triton import TritonControl, TritonUnavailableError


@pytest.fixture
async def dies_mid_request() -> AsyncIterator[str]:
    """host:port of a server that reads a request and closes the connection unanswered."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"127.0.0.1:{port}"


@pytest.mark.parametrize("call", ["load", "is_ready"])
async def test_a_triton_that_dies_mid_request_is_an_outage(
    dies_mid_request: str, call: str
) -> None:
    control = TritonControl(dies_mid_request, load_timeout=10)
    try:
        with pytest.raises(TritonUnavailableError, match=r"Triton at 127.0.0.1:\d+"):
            await getattr(control, call)("mdl_x")
    finally:
        await control.close()


@pytest.mark.parametrize("call", ["load", "is_ready"])
async def test_a_triton_that_refuses_connections_is_an_outage(call: str) -> None:
    control = TritonControl(f"127.0.0.1:{free_port()}", load_timeout=10)
    try:
        with pytest.raises(TritonUnavailableError):
            await getattr(control, call)("mdl_x")
    finally:
        await control.close()
