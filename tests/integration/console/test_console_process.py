"""The console as ``make up`` runs it: ``python -m console_service`` with the environment
``scripts/prelabel_stack`` gives it, answering /healthz, /readyz and /metrics, serving its
own JavaScript and CSS (nothing from elsewhere), and naming a bad setting clearly."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import sys
from pathlib import Path

import httpx
import pytest

from common.testing.servers import free_port
from prelabel_stack import CONSOLE, Service, StackConfig
from tests.conftest import AuthService


async def _ready(http: httpx.AsyncClient, process: asyncio.subprocess.Process, log: Path) -> None:
    def tail() -> str:
        return log.read_text()[-2000:]

    deadline = asyncio.get_running_loop().time() + 30
    while True:
        if process.returncode is not None:
            pytest.fail(f"the console exited: {tail()}")
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"the console is not ready after 30 s: {tail()}")
        await asyncio.sleep(0.1)


async def test_console_process_from_the_stacks_settings_serves_pages_and_ops_routes(
    auth_service: AuthService, tmp_path: Path
) -> None:
    port = free_port()
    stack = StackConfig.from_env()
    config = dataclasses.replace(stack, service_ports={**stack.service_ports, "console": port})
    component = Service(config, CONSOLE)
    env = {**component.env(), "CONSOLE_DATASET_URL": auth_service.url}
    assert env["CONSOLE_HTTP_PORT"] == str(port)
    assert env["CONSOLE_ROOT_PATH"] == ""  # served at / behind the proxy
    assert env["CONSOLE_PRELABEL_URL"] == config.proxy_url
    log = tmp_path / "console.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *component.command(), env=env, stdout=out, stderr=out
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            await _ready(http, process, log)
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            login = await http.get("/login")
            assert login.status_code == 200
            assert 'name="csrf_token"' in login.text
            # Nothing loaded from elsewhere (no CDN): every URL in the page is the console's.
            assert "http://" not in login.text
            assert "https://" not in login.text
            assert login.headers["content-security-policy"].startswith("default-src 'self'")
            for asset in ("/static/console.js", "/static/console.css"):
                assert (await http.get(asset)).status_code == 200
            # Sign in as a browser does (the form's CSRF token, the cookie), use a page.
            _, key = await auth_service.new_project()
            token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
            assert token is not None
            signed = await http.post("/login", data={"api_key": key, "csrf_token": token[1]})
            assert signed.status_code == 303
            assert key not in signed.headers["set-cookie"]
            datasets = await http.get("/datasets")
            assert datasets.status_code == 200
            assert key not in datasets.text
            await http.get("/datasets/ds_not_there?filter=%7B%7D")
            metrics = (await http.get("/metrics")).text
            assert "prelabel_console_http_request_duration_seconds" in metrics
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 15)
    assert process.returncode in (0, -15)
    assert key not in log.read_text()  # nor in the logs


async def test_a_short_session_secret_is_refused_at_start_up_with_its_name() -> None:
    env = {**os.environ, "CONSOLE_SESSION_SECRET": "short"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console_service", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert "CONSOLE_SESSION_SECRET" in stderr.decode()
