"""docker-compose.yml really pre-labels: images built here, the stack started with Podman,
a job through the nginx URL (upload -> trigger -> prediction on a service at 0 replicas,
woken by the router's container backend -> annotation -> task -> back to 0).

Slow (minutes: image builds on the first run, a cold Triton): opt in with
PRELABEL_DEPLOY_TESTS=1 (``make compose-test``). Needs root (rootful podman); podman,
docker-compose and mmdebstrap are installed with apt-get when missing
(``scripts/container_tools.py``), so an opted-in run fails rather than skips without them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import container_tools
import pytest

from common.testing.waits import wait_until
from prelabel_demo.flow import DemoFlow
from prelabel_demo.reporting import Reporter
from prelabel_demo.results import DemoOptions, Endpoints
from tests.integration.deploy.compose_stack import ComposeStack, compose_stack, missing_tools

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("PRELABEL_DEPLOY_TESTS") != "1",
        reason="container tests are opt-in: PRELABEL_DEPLOY_TESTS=1 (make compose-test)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="rootful podman needs root"),
    pytest.mark.timeout(1800),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    container_tools.ensure()
    assert missing_tools() == [], f"installed, yet missing {missing_tools()}"
    workdir: Path = tmp_path_factory.mktemp("compose")
    with compose_stack(workdir) as running:
        yield running


async def test_compose_stack_predicts_from_zero_through_the_proxy(stack: ComposeStack) -> None:
    options = DemoOptions(images=10, deadline_s=600, cooldown_s=5, scale_down_timeout_s=180)
    result = await DemoFlow(
        Endpoints.behind(stack.proxy_url, stack.admin_key), options, Reporter()
    ).run()
    assert result.executions.get("success") == options.images, result.executions
    assert result.annotations >= options.images
    # The router started worker containers from the worker image, then stopped them.
    assert result.replicas_at_deploy == 0
    assert result.max_replicas_seen >= 1
    assert result.scaled_to_zero_s is not None

    # The router counts a stopping replica out at once; its container drains, then goes.
    async def workers_gone() -> bool:
        return await asyncio.to_thread(stack.workers) == []

    await wait_until(workers_gone, timeout=120, message="the worker containers are gone at zero")


def test_compose_serves_the_console_at_the_root_of_the_proxy(stack: ComposeStack) -> None:
    import httpx

    with httpx.Client(base_url=stack.proxy_url, timeout=30) as browser:
        root = browser.get("/")
        login = browser.get("/login")
        metrics = browser.get("/metrics")

    assert root.status_code == 303
    assert root.headers["location"] == "/login"
    assert login.status_code == 200
    assert 'name="csrf_token"' in login.text
    assert "HttpOnly" in login.headers.get("set-cookie", "") or "HttpOnly" in root.headers.get(
        "set-cookie", ""
    )
    assert metrics.status_code == 404
