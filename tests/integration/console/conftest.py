"""The console on the five real services, and a headless Chromium driving it.

``console_stack``: the five services in this process (``tests/integration/client/stack.py``)
plus the console app on a real port, pointed at them one URL per service. ``browser``:
Debian's Chromium through Playwright (installed with apt-get when missing). ``shots``:
where each test writes its screenshots (``.artifacts/console/``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, async_playwright, expect

from common.settings import S3SettingsMixin
from common.testing.servers import serve_app
from console_service.app import create_app
from console_service.settings import Settings
from prelabel_client.sdk import Prelabel
from prelabel_stack.chromium import ensure_chromium
from tests.integration.client.stack import RunningStack, running_stack

REPO = Path(__file__).resolve().parents[3]
# Assertions wait as long as actions (Playwright's default for them is 5 s).
expect.set_options(timeout=30_000)
ARTIFACTS = REPO / ".artifacts" / "console"


@dataclass
class ConsoleStack:
    """The five services, the console's URL, and a project with its key and SDK client."""

    services: RunningStack
    url: str
    project_id: str
    api_key: str
    client: Prelabel


@pytest.fixture(scope="module")
async def console_stack(
    database_url: str,
    amqp_url: str,
    s3_settings: S3SettingsMixin,
    triton_url: str,
    triton_grpc_url: str,
) -> AsyncIterator[ConsoleStack]:
    async with running_stack(
        database_url=database_url,
        amqp_url=amqp_url,
        s3_settings=s3_settings,
        triton_url=triton_url,
        triton_grpc_url=triton_grpc_url,
    ) as services:
        e = services.endpoints
        settings = Settings(
            dataset_url=e.dataset,
            trigger_router_url=e.trigger_router,
            model_serving_url=e.model_serving,
            annotation_url=e.annotation,
            billing_url=e.billing,
            session_secret="console-tests-secret-of-at-least-32-chars",  # type: ignore[arg-type]
            page_size=24,
        )
        project_id, key = await services.new_project()
        async with (
            serve_app(create_app(settings)) as url,
            Prelabel(e, key, admin_key=services.admin_key) as client,
        ):
            yield ConsoleStack(services, url, project_id, key, client)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = ensure_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            # Root in a container: Chromium's sandbox needs user namespaces it lacks here.
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def context(browser: Browser, console_stack: ConsoleStack) -> AsyncIterator[BrowserContext]:
    created = await browser.new_context(
        base_url=console_stack.url, viewport={"width": 1280, "height": 900}
    )
    # Generous: the machine is shared, and a page waits on five services.
    created.set_default_timeout(30_000)
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Path:
    folder = ARTIFACTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    # Screenshots are test output, never something to commit.
    (ARTIFACTS.parent / ".gitignore").write_text("*\n")
    return folder
