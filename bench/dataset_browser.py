"""The console's dataset browser: first page of a 100,000-item dataset (100 thumbnails,
warm) in a real Chromium, next to the dataset API's query for the same page.

The five services and nginx run as deployed (``prelabel_stack.isolated``: processes,
a database, bucket and topology prefix of their own), the console as a process of its
own (``python -m console_service``) behind the same one URL as a browser would use it:
the console talks to the services through nginx with the signed-in key.

Seeding: 100 real JPEGs (640x480) are uploaded through the API into ``/batch0`` (their
names sort first, so they are the first page); 99,900 more rows go into the dataset
service's ``items`` table with one COPY (their blobs do not exist: they are never shown).
Each of the 100 thumbnails is then made once (the warm state: stored in S3).

In ``ROUNDS`` interleaved rounds, measured in the same run:

- ``dataset.browser_page_query`` (ms): the API's first page, ``POST
  /api/dataset/datasets/{id}/items/query`` with ``page_size`` 100 through nginx (SDK
  ``items.seek``: the page's items and the total count);
- ``dataset.browser_deep_page_query`` (ms): a page about 90,000 items in, by cursor,
  next to the first page (keyset paging: target ratio <= 2);
- ``console.browser_first_page`` (ms): a signed-in browser with an empty cache opens the
  browser page; from navigation start until the last of the 100 thumbnails has arrived
  (resource timing), every one decoded (``naturalWidth > 0``); next to the API query;
- ``console.browser_first_page_html`` (ms): the page's HTML alone (the grid, the
  directory tree and the services list, rendered by the console), next to the API query;
- ``console.browser_revisit`` (ms): the same page opened again in the same browser (the
  thumbnails come from its cache: ``Cache-Control: private, max-age``), next to the API;
- ``console.thumbnail_warm`` (ms): one stored thumbnail through the console (one request
  at a time), next to ``dataset.thumbnail_warm``, the same through the API (nginx).

Figures are medians of the rounds. Chromium is Debian's (the browser tests install it).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import statistics
import time
import uuid
from typing import Any

import asyncpg
import httpx
from PIL import Image
from playwright.async_api import Browser, async_playwright

from bench import results
from bench._process import service_process
from bench._servers import copy_items
from bench.settings import BenchSettings
from prelabel_client import Prelabel
from prelabel_stack.chromium import ensure_chromium
from prelabel_stack.isolated import ADMIN_KEY, isolated_stack

ORDER = 60
TIMEOUT_S = 900.0

ITEMS = 100_000
SHOWN = 100
ROUNDS = 9
WARMUP_ROUNDS = 2
DEEP_TARGET_RATIO = 2.0
VIEWPORT = {"width": 1280, "height": 4000}
"""Tall enough that all 100 tiles are in view: lazy images load at once."""


def _jpeg(seed: int) -> bytes:
    """A 640x480 photo-like JPEG (a gradient with some noise), distinct per seed."""
    base = Image.linear_gradient("L").resize((640, 480)).convert("RGB")
    noise = Image.effect_noise((640, 480), 20 + seed % 30).convert("RGB")
    tint = Image.new("RGB", (640, 480), (seed * 37 % 256, seed * 91 % 256, 128))
    image = Image.blend(Image.blend(base, noise, 0.3), tint, 0.35)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def _row(i: int, project_id: str, dataset_id: str) -> tuple[Any, ...]:
    directory = f"/batch{i % 10}"
    name = f"img{i:06d}.jpg"
    metadata = {
        "system": {
            "mimetype": "image/jpeg",
            "size": 40_000,
            "width": 640,
            "height": 480,
            "sha256": hashlib.sha256(f"bench-browser-{i}".encode()).hexdigest(),
        },
        "user": {},
    }
    return (
        f"itm_bench{i:08d}",
        project_id,
        dataset_id,
        name,
        f"{directory}/{name}",
        directory,
        json.dumps(metadata),
    )


async def _seed_rows(dsn: str, project_id: str, dataset_id: str, count: int) -> None:
    """``count`` item rows without blobs, in one COPY (no events: nothing reacts)."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "dataset"})
    try:
        await copy_items(conn, (_row(i, project_id, dataset_id) for i in range(count)))
        await conn.execute("VACUUM ANALYZE items")
    finally:
        await conn.close()


async def _signed_in_state(browser: Browser, console_url: str, key: str) -> Any:
    context = await browser.new_context(base_url=console_url)
    try:
        page = await context.new_page()
        await page.goto("/login")
        await page.fill("#api-key", key)
        await page.click("#login-form button[type=submit]")
        await page.wait_for_url("**/datasets")
        return await context.storage_state()
    finally:
        await context.close()


_TIMINGS = """() => {
  const images = Array.from(document.querySelectorAll('img.thumb'));
  const thumbs = performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/thumbnail'));
  const nav = performance.getEntriesByType('navigation')[0];
  return {
    images: images.length,
    decoded: images.filter((i) => i.complete && i.naturalWidth > 0).length,
    fetched: thumbs.length,
    last: thumbs.length ? Math.max(...thumbs.map((e) => e.responseEnd)) : 0,
    html: nav ? nav.responseEnd : 0,
  };
}"""


async def _first_page(browser: Browser, url: str, state: Any) -> tuple[float, float, float]:
    """``(all thumbnails arrived, HTML arrived, the page again with a warm cache)`` in ms
    from navigation start, in a fresh context (empty cache) holding the session."""
    context = await browser.new_context(storage_state=state, viewport=VIEWPORT)  # type: ignore[arg-type]
    try:
        page = await context.new_page()
        await page.goto(url)
        first = await _all_shown(page)
        await page.goto(url)
        again = await _all_shown(page, fetched=0)
        return first[0], first[1], again[1]
    finally:
        await context.close()


async def _all_shown(page: Any, fetched: int = SHOWN) -> tuple[float, float]:
    """``(last thumbnail's responseEnd, navigation responseEnd)`` once every tile's image
    decoded; for a revisit (``fetched`` 0, cached images) the second is the load end."""
    deadline = time.monotonic() + 60
    while True:
        seen = await page.evaluate(_TIMINGS)
        if seen["images"] == SHOWN and seen["decoded"] == SHOWN and seen["fetched"] >= fetched:
            if fetched:
                return float(seen["last"]), float(seen["html"])
            loaded = await page.evaluate(
                "() => { const n = performance.getEntriesByType('navigation')[0];"
                " return n ? (n.loadEventEnd || performance.now()) : performance.now(); }"
            )
            return 0.0, float(loaded)
        if time.monotonic() > deadline:
            raise RuntimeError(f"the page did not show its {SHOWN} thumbnails: {seen}")
        await asyncio.sleep(0.05)


async def _one_by_one(calls: list[Any]) -> float:
    """Median ms of ``calls`` (coroutine factories) awaited one after another."""
    timings = []
    for call in calls:
        start = time.perf_counter()
        await call()
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


async def _console_thumbnail(http: httpx.AsyncClient, item_id: str) -> None:
    answer = await http.get(f"/items/{item_id}/thumbnail")
    if answer.status_code != 200 or answer.headers.get("content-type") != "image/webp":
        raise RuntimeError(f"console thumbnail answered {answer.status_code}")


async def _timed(call: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    answer = await call
    return (time.perf_counter() - start) * 1000, answer


async def run() -> None:
    """Seed 100,000 items, warm the first page's thumbnails, time browser and API."""
    bench_dir = BenchSettings().bench_dir
    async with isolated_stack("bench-browser", root=bench_dir) as stack:
        async with Prelabel(stack.url, "unused", admin_key=ADMIN_KEY) as admin:
            project = await admin.projects.create(f"bench-browser-{uuid.uuid4().hex[:6]}")
            key = str((await admin.projects.create_api_key(project.id)).key)
        async with Prelabel(stack.url, key, max_connections=16) as client:
            dataset = await client.datasets.create("browser")
            uploads = asyncio.Semaphore(8)

            async def upload(n: int) -> None:
                async with uploads:
                    await client.items.upload(
                        dataset.id, _jpeg(n), f"a{n:03d}.jpg", remote_dir="/batch0"
                    )

            await asyncio.gather(*(upload(n) for n in range(SHOWN)))
            await _seed_rows(stack.dsn, project.id, dataset.id, ITEMS - SHOWN)
            first = await client.items.seek(dataset.id, page_size=SHOWN)
            if first.total_count != ITEMS or not all(i.name.startswith("a") for i in first.items):
                raise RuntimeError(f"seeding went wrong: {first.total_count} items")
            # Warm: each thumbnail made once (stored in S3).
            await asyncio.gather(*(client.items.thumbnail(i.id) for i in first.items))
            deep_start = await client.items.seek(dataset.id, {"dir": "/batch9"}, page_size=SHOWN)
            deep_cursor = deep_start.next_cursor

            log = stack.config.logs_dir / "console.log"
            env = {
                "CONSOLE_PRELABEL_URL": stack.url,
                "CONSOLE_PAGE_SIZE": str(SHOWN),
                "CONSOLE_SESSION_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
                "CONSOLE_LOG_LEVEL": "WARNING",
            }
            async with (
                service_process("console_service", "CONSOLE_", env, log) as console_url,
                async_playwright() as playwright,
            ):
                browser = await playwright.chromium.launch(
                    executable_path=ensure_chromium(),
                    headless=True,
                    args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
                )
                try:
                    state = await _signed_in_state(browser, console_url, key)
                    page_url = f"{console_url}/datasets/{dataset.id}"
                    cookies = {c["name"]: c["value"] for c in state["cookies"]}
                    console_http = httpx.AsyncClient(base_url=console_url, cookies=cookies)
                    sample = [i.id for i in first.items[:10]]
                    api, deep, shown, html, revisit, api_thumb, console_thumb = (
                        [], [], [], [], [], [], []
                    )  # fmt: skip
                    for round_ in range(WARMUP_ROUNDS + ROUNDS):
                        api_ms, page = await _timed(client.items.seek(dataset.id, page_size=SHOWN))
                        deep_ms, later = await _timed(
                            client.items.seek(dataset.id, cursor=deep_cursor, page_size=SHOWN)
                        )
                        if len(page.items) != SHOWN or len(later.items) != SHOWN:
                            raise RuntimeError("a page came back short")
                        first_ms, html_ms, again_ms = await _first_page(browser, page_url, state)
                        via_api = await _one_by_one(
                            [lambda i=i: client.items.thumbnail(i) for i in sample]
                        )
                        via_console = await _one_by_one(
                            [lambda i=i: _console_thumbnail(console_http, i) for i in sample]
                        )
                        if round_ >= WARMUP_ROUNDS:
                            api.append(api_ms)
                            deep.append(deep_ms)
                            shown.append(first_ms)
                            html.append(html_ms)
                            revisit.append(again_ms)
                            api_thumb.append(via_api)
                            console_thumb.append(via_console)
                finally:
                    await browser.close()
                    await console_http.aclose()

    api_ms, deep_ms = statistics.median(api), statistics.median(deep)
    first_ms, html_ms = statistics.median(shown), statistics.median(html)
    results.record("dataset.browser_page_query", api_ms, "ms")
    results.record(
        "dataset.browser_deep_page_query",
        deep_ms,
        "ms",
        baseline="dataset.browser_page_query",
        baseline_value=api_ms,
        target_ratio=DEEP_TARGET_RATIO,
        higher_is_better=False,
    )
    results.record(
        "console.browser_first_page",
        first_ms,
        "ms",
        baseline="dataset.browser_page_query",
        baseline_value=api_ms,
        higher_is_better=False,
    )
    results.record(
        "console.browser_first_page_html",
        html_ms,
        "ms",
        baseline="dataset.browser_page_query",
        baseline_value=api_ms,
        higher_is_better=False,
    )
    results.record(
        "console.browser_revisit",
        statistics.median(revisit),
        "ms",
        baseline="dataset.browser_page_query",
        baseline_value=api_ms,
        higher_is_better=False,
    )
    results.record("dataset.thumbnail_warm", statistics.median(api_thumb), "ms")
    results.record(
        "console.thumbnail_warm",
        statistics.median(console_thumb),
        "ms",
        baseline="dataset.thumbnail_warm",
        baseline_value=statistics.median(api_thumb),
        higher_is_better=False,
    )
    print(
        f"first page ({SHOWN} thumbnails of {ITEMS} items, warm): browser {first_ms:.0f} ms "
        f"(HTML {html_ms:.0f} ms); API query {api_ms:.1f} ms, ratio {first_ms / api_ms:.1f}; "
        f"deep page by cursor {deep_ms:.1f} ms (ratio {deep_ms / api_ms:.2f}); "
        f"rounds: browser {[round(v) for v in shown]}, API {[round(v, 1) for v in api]}"
    )
