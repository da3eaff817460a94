"""The console in a real headless Chromium on the five real services.

One project: a dataset of digits in two directories, the digits classifier deployed at 0
replicas, a task its predictions fill, and an item with a person's box, polygon and OCR
line. The browser signs in, browses and filters (a bad DQL filter shows the API's message
inline), selects items and predicts (the progress bar reaches 100%), opens an item and
sees its annotations drawn, reviews task items with the keyboard, and signs out.
Screenshots of each page go to ``.artifacts/console/<test>/``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, expect

from prelabel_client.errors import ValidationError
from prelabel_client.models import Scaling
from prelabel_client.sync import SyncPrelabel
from tests.integration.console.conftest import ConsoleStack
from tests.integration.model_serving.conftest import held_out_digits

BAD_FILTER = '{"metadata.user.size": {"$between": [1, 2]}}'
DEADLINE_S = 120.0


@dataclass
class World:
    """What the module's project holds."""

    dataset_id: str
    item_ids: list[str]
    drawn_item: str
    service_id: str
    task_id: str


async def _until(
    what: str, check: Callable[[], Awaitable[Any]], timeout_s: float = DEADLINE_S
) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
async def world(console_stack: ConsoleStack) -> World:
    client = console_stack.client
    dataset = await client.datasets.create("digits")
    item_ids = []
    for index, (_label, png) in enumerate(held_out_digits(6)):
        item = await client.items.upload(
            dataset.id, png, f"digit_{index}.png", remote_dir=f"/part{index % 2}"
        )
        item_ids.append(item.id)
    model = await client.models.install("digits-classifier")
    service = await client.services.deploy(
        # One replica from the start: it loads the model while the browser signs in.
        model.id,
        "digits",
        Scaling(min_replicas=1, max_replicas=1, cooldown_seconds=300),
    )
    task = await client.tasks.create(
        "review digits", dataset.id, auto_add_from_services=[service.id]
    )
    await client.services.wait_ready(service.id)
    # A person's annotations on the first item: two boxes, a polygon and an OCR line.
    drawn = item_ids[0]
    headers = {"Authorization": f"Bearer {console_stack.api_key}"}
    async with httpx.AsyncClient(
        base_url=console_stack.services.endpoints.annotation, headers=headers
    ) as http:
        for body in (
            {"type": "box", "label": "stroke", "coordinates": [[2, 2], [12, 14]]},
            {"type": "box", "label": "stroke", "coordinates": [[16, 4], [28, 20]]},
            {"type": "polygon", "label": "loop", "coordinates": [[4, 20], [14, 18], [10, 30]]},
            {
                "type": "text",
                "label": "line",
                "text": "seven",
                "coordinates": [[1, 24], [30, 24], [30, 31], [1, 31]],
            },
        ):
            created = await http.post("/annotations", json={"item_id": drawn, **body})
            assert created.status_code == 201, created.text
    return World(dataset.id, item_ids, drawn, service.id, task.id)


async def _sign_in(page: Page, key: str) -> None:
    await page.goto("/datasets")
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.fill("#api-key", key)
    await page.click("#login-form button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/datasets$"))


async def test_sign_in_browse_filter_predict_draw_review_and_sign_out(
    context: BrowserContext, console_stack: ConsoleStack, world: World, shots: Path
) -> None:
    page = await context.new_page()
    await page.goto("/login")
    await page.fill("#api-key", "not-a-key")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#login-error")).to_contain_text("not a valid")
    await _sign_in(page, console_stack.api_key)
    await page.screenshot(path=shots / "datasets.png", full_page=True)
    assert console_stack.api_key not in await page.content()

    # Browse, filter by directory, then a bad DQL filter: the API's own message inline.
    await page.click("#datasets >> text=digits")
    await expect(page.locator("li.tile")).to_have_count(6)
    await page.fill("#dir", "/part1")
    await page.click("#apply-filter")
    await expect(page.locator("li.tile")).to_have_count(3)
    await page.fill("#dir", "")
    await page.fill("#dql", BAD_FILTER)
    await page.click("#apply-filter")
    with pytest.raises(ValidationError) as refused:
        await console_stack.client.items.query(
            world.dataset_id, {"metadata.user.size": {"$between": [1, 2]}}
        )
    await expect(page.locator("#dql-error")).to_have_text(refused.value.message)
    await page.screenshot(path=shots / "browser-dql-error.png", full_page=True)
    await page.fill("#dql", "")
    await page.click("#apply-filter")
    await expect(page.locator("li.tile")).to_have_count(6)
    await page.screenshot(path=shots / "browser.png", full_page=True)

    # Select: click the first tile, shift-click the third (a range of three), predict.
    await page.locator("li.tile input.pick").nth(0).click()
    await page.locator("li.tile input.pick").nth(2).click(modifiers=["Shift"])
    await expect(page.locator("#selected-count")).to_have_text("3 selected")
    await page.select_option("#service", world.service_id)
    await page.click("#predict-selected")
    await expect(page).to_have_url(re.compile(r"/batches/"))
    await expect(page.locator("#batch-done")).to_be_visible(timeout=DEADLINE_S * 1000)
    await expect(page.locator("#progress-text")).to_have_text("100%")
    await expect(page.locator('#batch-counts [data-status="success"] b')).to_have_text("3")
    await page.screenshot(path=shots / "batch.png", full_page=True)

    # The item page: the person's shapes drawn, the model's classification beside them.
    await page.goto(f"/items/{world.drawn_item}")
    overlay = page.locator("#overlay")
    await expect(overlay.locator("g.shape-box rect")).to_have_count(2)
    await expect(overlay.locator("g.shape-polygon polygon")).to_have_count(1)
    await expect(overlay.locator("g.shape-text polygon")).to_have_count(1)
    await expect(page.locator("#classifications .chip")).to_have_count(1)
    await expect(page.locator("#annotations")).to_contain_text("digits-classifier")
    await expect(page.locator("#annotations")).to_contain_text("seven")
    assert await page.evaluate("document.getElementById('canvas-image').naturalWidth") == 32
    await page.screenshot(path=shots / "item.png", full_page=True)

    # Review: the predictions filled the task; approve one (a), discard the next (d).
    await _until("the task to hold the predicted items", _task_total(console_stack, world, 3))
    await page.goto("/tasks")
    await page.click("#tasks .review-link")
    await expect(page.locator("#review")).to_be_visible()
    await expect(page.locator("#review #classifications .chip")).to_have_count(1)
    await page.screenshot(path=shots / "review.png", full_page=True)
    first = await page.locator("#review").get_attribute("data-item")
    await page.keyboard.press("a")
    await expect(page.locator("#review")).not_to_have_attribute("data-item", first or "")
    second = await page.locator("#review").get_attribute("data-item")
    await page.keyboard.press("n")
    await expect(page).to_have_url(re.compile(r"skip=1"))
    await page.keyboard.press("ArrowLeft")
    await expect(page.locator("#review")).to_have_attribute("data-item", second or "")
    await page.keyboard.press("d")
    await expect(page.locator("#task-progress")).to_contain_text("2 of 3 reviewed")
    progress = await console_stack.client.tasks.progress(world.task_id)
    assert (progress.counts.get("approved"), progress.counts.get("discarded")) == (1, 1)
    await expect(page.locator("#acceptance")).to_contain_text("50%")

    # Correct the third: draw a box over the image (b, drag), relabel the prediction (c).
    third = await page.locator("#review").get_attribute("data-item")
    assert third not in (first, second)
    await page.keyboard.press("b")
    box = await page.locator("#overlay").bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.25)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5, steps=4)
    await page.mouse.up()
    await expect(page.locator("#drawn-count")).to_have_text("1 box drawn")
    await page.fill("#new-label", "ink")
    await page.locator("#annotations .edit-label").first.fill("relabelled")
    await page.screenshot(path=shots / "review-correct.png", full_page=True)
    await page.click("#correct")
    await expect(page.locator("#review-empty")).to_be_visible()
    progress = await console_stack.client.tasks.progress(world.task_id)
    assert progress.counts.get("corrected") == 1
    [acceptance] = await console_stack.client.tasks.acceptance(world.task_id)
    assert (acceptance.reviewed, acceptance.approved, acceptance.corrected) == (3, 1, 1)
    await expect(page.locator("#acceptance")).to_contain_text("33%")
    current = await console_stack.client.annotations.list(item_id=third or "")
    [drawn] = [a for a in current if a.label == "ink"]
    (x1, y1), (x2, y2) = drawn.coordinates
    assert drawn.type == "box"
    assert (x1, y1, x2, y2) == pytest.approx((8, 8, 16, 16), abs=1.0)  # image pixels
    assert "relabelled" in {a.label for a in current}

    await page.click("#sign-out")
    await expect(page).to_have_url(re.compile(r"/login$"))
    await page.goto("/datasets")
    await expect(page).to_have_url(re.compile(r"/login\?next=/datasets$"))


def _task_total(stack: ConsoleStack, world: World, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await stack.client.tasks.progress(world.task_id)).total >= count

    return check


async def test_grid_shows_thumbnails_and_the_directory_tree_narrows_it(
    context: BrowserContext, console_stack: ConsoleStack, world: World, shots: Path
) -> None:
    page = await context.new_page()
    await _sign_in(page, console_stack.api_key)
    await page.goto(f"/datasets/{world.dataset_id}")
    thumbs = page.locator("li.tile img.thumb")
    await expect(thumbs).to_have_count(6)
    for n in range(6):
        await expect(thumbs.nth(n)).to_have_attribute("loading", "lazy")

    # Every tile's image arrives and decodes (the console's thumbnail route, WebP).
    # (Polled with evaluate: wait_for_function evaluates strings, which the CSP forbids.)
    async def decoded() -> bool:
        widths = await page.evaluate(
            "Array.from(document.querySelectorAll('img.thumb'), (i) => i.complete ? i.naturalWidth : 0)"
        )
        return len(widths) == 6 and all(width > 0 for width in widths)

    await _until("every thumbnail to load", decoded, timeout_s=30)
    src = await thumbs.first.get_attribute("src")
    assert src is not None
    assert "/thumbnail?size=256" in src
    assert console_stack.api_key not in await page.content()
    first = await context.request.get(src)
    assert first.status == 200
    assert first.headers["content-type"] == "image/webp"
    assert first.headers["cache-control"].startswith("private, max-age=")
    etag = first.headers["etag"]
    cached = await context.request.get(src, headers={"If-None-Match": etag})
    assert cached.status == 304
    assert cached.headers["etag"] == etag

    # The tree: both directories with their counts; a click narrows the grid to one.
    tree = page.locator("#dir-tree")
    await expect(tree.locator('a[data-dir="/part0/**"] .count')).to_have_text("3")
    await expect(tree.locator('a[data-dir="/part1/**"] .count')).to_have_text("3")
    await expect(tree.locator('a[data-dir=""] .count')).to_have_text("6")
    await tree.locator('a[data-dir="/part1/**"]').click()
    await expect(page.locator("li.tile")).to_have_count(3)
    await expect(page.locator("#dir")).to_have_value("/part1/**")
    await expect(page).to_have_url(re.compile(r"dir=%2Fpart1%2F(\*\*|%2A%2A)"))
    await expect(page.locator("#dir-tree a.current")).to_have_attribute("data-dir", "/part1/**")
    names = await page.locator("li.tile a.name").all_inner_texts()
    assert names == ["digit_1.png", "digit_3.png", "digit_5.png"]
    await page.screenshot(path=shots / "browser-tree.png", full_page=True)

    # With a DQL filter the tree narrows it further: both conditions hold.
    await tree.locator('a[data-dir=""]').click()
    await expect(page.locator("li.tile")).to_have_count(6)
    await page.fill("#dql", '{"name": {"$in": ["digit_0.png", "digit_1.png"]}}')
    await page.click("#apply-filter")
    await expect(page.locator("li.tile")).to_have_count(2)
    await page.locator('#dir-tree a[data-dir="/part1/**"]').click()
    await expect(page.locator("li.tile a.name")).to_have_text(["digit_1.png"])
    await expect(page.locator("#dql")).to_have_value(
        '{"name": {"$in": ["digit_0.png", "digit_1.png"]}}'
    )

    # The same through the SDK's blocking client (directories, thumbnails).
    def sync_calls() -> tuple[list[tuple[str, int]], bool]:
        with SyncPrelabel(console_stack.services.endpoints, console_stack.api_key) as client:
            listing = client.datasets.directories(world.dataset_id)
            thumbnail = client.items.thumbnail(world.item_ids[0], 128)
            again = client.items.thumbnail(world.item_ids[0], 128, if_none_match=thumbnail.etag)
            return [(c.dir, c.item_count) for c in listing.children], again.not_modified

    assert await asyncio.to_thread(sync_calls) == ([("/part0", 3), ("/part1", 3)], True)


async def test_grid_pages_by_cursor(
    context: BrowserContext, console_stack: ConsoleStack, shots: Path
) -> None:
    client = console_stack.client
    dataset = await client.datasets.create("many")
    await asyncio.gather(
        *(client.items.upload(dataset.id, f"note {n}".encode(), f"n{n:02d}.txt") for n in range(30))
    )
    page = await context.new_page()
    await _sign_in(page, console_stack.api_key)
    await page.goto(f"/datasets/{dataset.id}")
    await expect(page.locator("li.tile")).to_have_count(24)  # the stack's page size
    await expect(page.locator("#prev-page")).to_have_count(0)
    await page.click("#next-page")
    await expect(page.locator("li.tile")).to_have_count(6)
    await expect(page.locator("#grid-total")).to_contain_text("30 items match · page 2")
    await expect(page).to_have_url(re.compile(r"cursor="))
    await expect(page.locator("#next-page")).to_have_count(0)
    await expect(page.locator("li.tile a.name").first).to_have_text("n24.txt")
    await page.screenshot(path=shots / "browser-page-2.png", full_page=True)
    await page.click("#prev-page")
    await expect(page.locator("li.tile")).to_have_count(24)
    await expect(page.locator("li.tile a.name").first).to_have_text("n00.txt")
    await expect(page.locator("#grid-total")).to_contain_text("page 1")
    # An address with a cursor reloads the same page.
    await page.click("#next-page")
    await expect(page.locator("li.tile")).to_have_count(6)
    await page.reload()
    await expect(page.locator("li.tile a.name").first).to_have_text("n24.txt")


async def test_pages_need_a_session_and_forms_a_csrf_token(
    context: BrowserContext, console_stack: ConsoleStack, world: World
) -> None:
    http = context.request
    anonymous = await http.get("/datasets", max_redirects=0)
    assert anonymous.status == 303
    assert anonymous.headers["location"].endswith("/login?next=/datasets")
    partial = await http.get(
        f"/datasets/{world.dataset_id}/grid", headers={"X-Console-Partial": "1"}, max_redirects=0
    )
    assert partial.status == 401
    image = await http.get(f"/items/{world.drawn_item}/image", max_redirects=0)
    assert image.status == 303
    for path in (
        f"/items/{world.drawn_item}/thumbnail",
        f"/datasets/{world.dataset_id}/tree",
    ):
        assert (await http.get(path, max_redirects=0)).status == 303, path

    page = await context.new_page()
    await _sign_in(page, console_stack.api_key)
    [cookie] = await context.cookies()
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert console_stack.api_key not in cookie["value"]

    for form in ({}, {"csrf_token": "forged"}):
        refused = await http.post(
            "/models/install", form={"catalog_name": "digits-classifier", **form}
        )
        assert refused.status == 403
        assert "CSRF" in await refused.text()
    assert len(await console_stack.client.models.list()) == 1  # nothing installed
    token = await page.locator("body").get_attribute("data-csrf")
    assert token
    refused = await http.post("/logout", form={"csrf_token": token[:-1]}, max_redirects=0)
    assert refused.status == 403

    # Another project's dataset and item are not found, as pages.
    other_id, other_key = await console_stack.services.new_project()
    async with httpx.AsyncClient(
        base_url=console_stack.services.endpoints.dataset,
        headers={"Authorization": f"Bearer {other_key}"},
    ) as other:
        theirs = (await other.post("/datasets", json={"name": "theirs"})).json()
    for path in (f"/datasets/{theirs['id']}", f"/datasets/{theirs['id']}/grid"):
        answer = await http.get(path)
        assert answer.status == 404, path
        assert console_stack.api_key not in await answer.text()
    assert other_id != console_stack.project_id


async def test_models_triggers_and_a_pipeline_from_the_form_bring_an_upload_to_its_task(
    context: BrowserContext, console_stack: ConsoleStack, world: World, shots: Path
) -> None:
    client = console_stack.client
    page = await context.new_page()
    await _sign_in(page, console_stack.api_key)

    # Predict on everything the filter matches (no selection).
    await page.goto(f"/datasets/{world.dataset_id}?dir=/part1")
    await expect(page.locator("li.tile")).to_have_count(3)
    await page.select_option("#service", world.service_id)
    await page.click("#predict-all")
    await expect(page.locator("#batch-done")).to_be_visible(timeout=DEADLINE_S * 1000)
    await expect(page.locator("#batch-counts")).to_contain_text("3")
    batch_id = page.url.rsplit("/", 1)[-1]
    batch = await client.batches.get(batch_id)
    assert batch.selection == {"dataset_id": world.dataset_id, "filter": {"dir": "/part1"}}

    await page.click("header nav >> text=Models")
    row = page.locator(f'#services-table tr[data-service="{world.service_id}"]')
    await expect(row).to_contain_text("ready")
    await expect(page.locator("#catalog")).to_contain_text("digits-classifier")
    await page.screenshot(path=shots / "models.png", full_page=True)
    # Bring your own model: model-serving's refusal of a file that is no archive, inline.
    bogus = shots / "not-a-model.tar.gz"
    bogus.write_bytes(b"not an archive")
    await page.set_input_files("#push-form input[name=archive]", str(bogus))
    await page.fill("#push-form input[name=name]", "mine")
    await page.fill(
        "#push-form input[name=spec]", '{"input_type": "image", "adapter": "classification"}'
    )
    await page.click("#push-form button[type=submit]")
    await expect(page.locator("#models-error")).to_be_visible()
    row = page.locator(f'#services-table tr[data-service="{world.service_id}"]')
    await row.locator("a").click()
    await page.fill("#trigger-form input[name=name]", "new digits")
    await page.fill("#trigger-form input[name=filter]", BAD_FILTER)
    await page.click("#trigger-form button[type=submit]")
    await expect(page.locator("#trigger-error")).to_be_visible()
    await page.fill("#trigger-form input[name=name]", "new digits")
    await page.fill("#trigger-form input[name=filter]", '{"dir": "/never/**"}')
    await page.click("#trigger-form button[type=submit]")
    await expect(page.locator("#triggers")).to_contain_text("new digits")
    [trigger] = await client.triggers.list(service_id=world.service_id)
    assert trigger.spec.filter == {"dir": "/never/**"}
    await page.screenshot(path=shots / "service.png", full_page=True)

    await page.click("header nav >> text=Pipelines")
    await page.fill("#pipeline-form input[name=name]", "digits to review")
    await page.select_option("#pipeline-dataset", world.dataset_id)
    await page.select_option("#pipeline-service", world.service_id)
    await page.fill("#pipeline-form input[name=filter]", '{"dir": "/incoming"}')
    await page.fill("#pipeline-form input[name=new_task]", "pipeline review")
    await page.fill("#pipeline-form input[name=min_confidence]", "1.01")
    await page.click("#pipeline-form button[type=submit]")
    await expect(page.locator("#pipeline-error")).to_contain_text("between 0 and 1")
    await page.fill("#pipeline-form input[name=name]", "digits to review")
    await page.select_option("#pipeline-dataset", world.dataset_id)
    await page.select_option("#pipeline-service", world.service_id)
    await page.fill("#pipeline-form input[name=filter]", '{"dir": "/incoming"}')
    await page.fill("#pipeline-form input[name=new_task]", "pipeline review")
    await page.fill("#pipeline-form input[name=min_confidence]", "")
    await page.click("#pipeline-form button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/pipelines/"))
    await expect(page.locator("#pipeline-status")).to_have_text("running")
    await expect(page.locator("#pipeline-graph g.node")).to_have_count(3)

    _label, png = held_out_digits(7)[0]
    uploaded = await client.items.upload(world.dataset_id, png, "new.png", remote_dir="/incoming")
    review_counts = page.locator('#pipeline-graph g[data-node="review"] .node-counts')
    await expect(review_counts).to_contain_text("success 1", timeout=DEADLINE_S * 1000)
    await page.screenshot(path=shots / "pipeline.png", full_page=True)
    [task] = [t for t in await client.tasks.list() if t.name == "pipeline review"]
    entered = await client.tasks.items(task.id)
    assert [i.item_id for i in entered.items] == [uploaded.id]

    await page.click("#stop-pipeline")
    await expect(page.locator("#pipeline-status")).to_have_text("stopped")

    # Billing: the replica's runtime in the chart, a bad top-up refused inline, a good one.
    await client.billing.set_budget("5")
    await page.click("header nav >> text=Billing")
    await expect(page.locator("#usage-chart")).to_be_visible()
    await page.fill("#top-up-form input[name=amount]", "lots")
    await page.click("#top-up-form button[type=submit]")
    await expect(page.locator("#billing-error")).to_be_visible()
    await page.fill("#top-up-form input[name=amount]", "2.5")
    await page.click("#top-up-form button[type=submit]")
    await expect(page.locator("#budget")).to_contain_text("7.5")
    assert (await client.billing.budget()).budget == Decimal("7.5")
    await page.screenshot(path=shots / "billing.png", full_page=True)
