"""Cheap, bounded checks: does a port, an HTTP endpoint, AMQP, PostgreSQL or S3 answer?"""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from prelabel_stack.config import StackConfig, StackError


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


@dataclass
class Probe:
    """The answer to "is this component usable right now?" with the reason when not."""

    ok: bool
    detail: str = ""


def run_async(coro: Any, timeout: float) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def probe_amqp(url: str) -> Probe:
    """Open and close a real AMQP connection (handshake and login)."""
    if not port_open(port_of(url)):
        return Probe(False, "port closed")
    import aiormq

    async def connect() -> None:
        connection = await aiormq.connect(url)
        await connection.close()

    try:
        run_async(connect(), 5.0)
    except Exception as exc:
        return Probe(False, f"{type(exc).__name__}: {exc}")
    return Probe(True)


def probe_postgres(dsn: str) -> Probe:
    """Connect to PostgreSQL and run ``SELECT 1``."""
    if not port_open(port_of(dsn)):
        return Probe(False, "port closed")
    import asyncpg

    async def connect() -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    try:
        run_async(connect(), 8.0)
    except Exception as exc:
        return Probe(False, f"{type(exc).__name__}: {exc}")
    return Probe(True)


def port_of(url: str) -> int:
    from urllib.parse import urlsplit

    port = urlsplit(url).port
    if port is None:
        raise StackError(f"no port in {url!r}")
    return port


def s3_client(config: StackConfig) -> Any:
    """A plain botocore S3 client on the stack's endpoint, with short timeouts."""
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    return session.create_client(
        "s3",
        endpoint_url=config.s3_endpoint,
        aws_access_key_id=config.s3_access_key,
        aws_secret_access_key=config.s3_secret_key,
        region_name=config.s3_region,
        config=Config(
            connect_timeout=2,
            read_timeout=10,
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
        ),
    )
