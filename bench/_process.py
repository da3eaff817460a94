"""A prelabel service run the way it is deployed (``python -m <package>``: uvloop,
httptools, the service's GC settings) in a subprocess, for benchmarks that measure it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from common.testing.servers import free_port

STARTUP_TIMEOUT_S = 60.0


@contextlib.asynccontextmanager
async def service_process(
    module: str, env_prefix: str, env: dict[str, str], log: Path
) -> AsyncIterator[str]:
    """Run ``python -m <module>`` with ``env`` (plus ``<env_prefix>HTTP_PORT``) until the
    block ends; yield its URL once ``/readyz`` answers 200. Output goes to ``log``."""
    port = free_port()
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            env={**os.environ, **env, f"{env_prefix}HTTP_PORT": str(port)},
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        async with httpx.AsyncClient(base_url=url, timeout=2.0) as http:
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"{module} exited: {await _tail(log)}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"{module} not ready: {await _tail(log)}")
                await asyncio.sleep(0.1)
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(30):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


async def _tail(log: Path) -> str:
    text = await asyncio.to_thread(log.read_text, errors="replace")
    return text[-2000:]
