"""``make demo``: a real pre-labeling job, end to end, against the running services.

    .venv/bin/python scripts/demo.py [--images 50] [--deadline 180] [--cooldown 10]

Over HTTP only, as a user would, it:

1. creates a project and an API key (dataset admin key) and a dataset ``demo-<timestamp>``;
2. installs the catalog's ``digits-classifier`` and deploys it as a model service with
   0..1 replicas and a short cooldown, and waits until it is ready;
3. creates a trigger on the dataset's new PNGs under ``/digits`` that runs predict on it;
4. creates a labeling task that takes every item the service predicts on;
5. sets the project's automation budget;
6. renders handwritten digits the model never saw (scikit-learn's held-out samples) as
   PNGs and uploads them with the prelabel SDK, each with ``{"truth": <digit>}``;
7. watches executions, replicas (0 -> 1), annotations and the task fill up;
8. summarises: cold start, accuracy against the truth, a few reviews (approve, correct)
   and the acceptance rate, billing usage, and the service scaling back to 0.

The service URLs and the admin key come from ``scripts/stack.py``'s configuration (the
same ``PRELABEL_*`` variables ``make up`` reads). :class:`DemoFlow` is the job itself; the
end-to-end test (``tests/e2e``) runs the same flow against services it starts itself.
Any failed step stops the demo with the service's answer and a non-zero exit status.
"""

from __future__ import annotations

import asyncio
import io
import shlex
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
# `python scripts/demo.py` puts scripts/ on sys.path, not the repository root.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.live import Live  # noqa: E402
from rich.panel import Panel  # noqa: E402
from rich.progress import (  # noqa: E402
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table  # noqa: E402

from prelabel_client import LocalFile, PrelabelClient, Uploader, UploadProgress  # noqa: E402
from prelabel_client.errors import ApiError  # noqa: E402
from prelabel_stack import SERVICES, Stack, StackConfig, render  # noqa: E402

CATALOG_MODEL = "digits-classifier"
REMOTE_DIR = "/digits"
HELD_OUT_FROM = 1500
"""The catalog's digits classifier trains on scikit-learn's first 1500 samples."""
TERMINAL = ("success", "failed", "cancelled")


class StepFailedError(Exception):
    """A step of the job failed; ``body`` is the service's answer when there was one."""

    def __init__(self, step: str, message: str, body: str | None = None) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message
        self.body = body


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Endpoints:
    """Base URLs of the five services and the dataset service's admin key."""

    dataset: str
    trigger_router: str
    model_serving: str
    annotation: str
    billing: str
    admin_key: str

    @classmethod
    def from_stack(cls) -> Endpoints:
        """What ``scripts/stack.py up`` started (ports and key from the same variables)."""
        config = StackConfig.from_env()
        urls = {s.name: f"http://127.0.0.1:{config.service_ports[s.name]}" for s in SERVICES}
        return cls(
            dataset=urls["dataset"],
            trigger_router=urls["trigger-router"],
            model_serving=urls["model-serving"],
            annotation=urls["annotation"],
            billing=urls["billing"],
            admin_key=config.admin_key,
        )

    def urls(self) -> dict[str, str]:
        """Service name -> base URL."""
        return {
            "dataset": self.dataset,
            "trigger-router": self.trigger_router,
            "model-serving": self.model_serving,
            "annotation": self.annotation,
            "billing": self.billing,
        }


@dataclass(frozen=True)
class DemoOptions:
    """How big the job is and how long each wait may take."""

    images: int = 50
    deadline_s: float = 180.0
    """Longest wait for every execution to finish (cold start included)."""
    cooldown_s: float = 10.0
    """The model service's idle time before it scales back to zero."""
    drain_s: float = 5.0
    budget: Decimal = Decimal("5.00")
    approve: int = 5
    correct: int = 1
    scale_down_timeout_s: float = 90.0
    poll_s: float = 0.5
    upload_concurrency: int = 8
    name: str = field(default_factory=lambda: f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}")


# --------------------------------------------------------------------------- what the job saw


@dataclass(frozen=True)
class Snapshot:
    """One look at the pipeline while it runs."""

    elapsed_s: float
    executions: Mapping[str, int]
    desired_replicas: int
    actual_replicas: int
    running_replicas: int
    annotations: int
    task_items: int
    pending_review: int
    uploaded: int

    @property
    def finished(self) -> int:
        """Executions in a final state."""
        return sum(self.executions.get(s, 0) for s in TERMINAL)

    @property
    def total(self) -> int:
        """Executions created so far."""
        return sum(self.executions.values())


@dataclass
class Review:
    """The reviews the demo made."""

    approved: list[str] = field(default_factory=list)
    corrected: list[str] = field(default_factory=list)


@dataclass
class DemoResult:
    """Everything the job created and measured."""

    project_id: str = ""
    api_key: str = ""
    dataset_id: str = ""
    dataset_name: str = ""
    model_id: str = ""
    service_id: str = ""
    trigger_id: str = ""
    task_id: str = ""
    uploaded: int = 0
    upload_s: float = 0.0
    executions: dict[str, int] = field(default_factory=dict)
    cold_start_s: float | None = None
    """First execution: queued -> started (replica start and model load inside)."""
    cold_start_executions: int = 0
    first_prediction_s: float | None = None
    """First execution queued -> first execution finished (the router's clock)."""
    all_done_s: float | None = None
    """Upload start -> every execution finished."""
    replicas_at_deploy: int = -1
    """Replicas the router reported once the service was ready (0: it idles for free)."""
    max_replicas_seen: int = 0
    annotations: int = 0
    correct: int = 0
    compared: int = 0
    confusions: list[tuple[str, int, str]] = field(default_factory=list)
    """(item id, truth, predicted label) of the wrong predictions."""
    review: Review = field(default_factory=Review)
    task_progress: dict[str, Any] = field(default_factory=dict)
    acceptance: list[dict[str, Any]] = field(default_factory=list)
    runtime_seconds: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    predictions: int = 0
    budget: dict[str, Any] = field(default_factory=dict)
    scaled_to_zero_s: float | None = None
    """Last execution finished -> the router reports 0 replicas."""

    @property
    def accuracy(self) -> float | None:
        """Correct / compared predictions."""
        return self.correct / self.compared if self.compared else None

    @property
    def acceptance_rate(self) -> float | None:
        """The digits model's acceptance rate in the task (approved unchanged / reviewed)."""
        rates = [a["acceptance_rate"] for a in self.acceptance if a["acceptance_rate"] is not None]
        return float(rates[0]) if rates else None


# --------------------------------------------------------------------------- reporting


class Reporter:
    """What the job tells its user; every hook does nothing here (the e2e test's view)."""

    def step(self, number: int, title: str) -> None:
        """Step ``number`` begins."""

    def done(self, message: str) -> None:
        """The current step succeeded."""

    def upload_started(self, total: int) -> None:
        """``total`` files are about to go up."""

    def upload_advanced(self, name: str, status: str) -> None:
        """One file was uploaded, skipped or failed."""

    def upload_finished(self) -> None:
        """Every file is settled."""

    def watch(self, snapshot: Snapshot) -> None:
        """The pipeline as of now (called every poll)."""

    def watch_finished(self) -> None:
        """The watch is over."""

    def scaling(self, desired: int, actual: int, running: int, waited_s: float) -> None:
        """While waiting for scale-down: the replica counts now."""

    def close(self) -> None:
        """The job ended (done or failed): stop anything still drawing."""


class _UploadHooks(UploadProgress):
    """The SDK's progress hooks, forwarded to a reporter."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def finished(self, outcome: Any) -> None:
        self.reporter.upload_advanced(outcome.file.name, outcome.status)


# --------------------------------------------------------------------------- sample data


def digit_samples(count: int) -> list[tuple[int, bytes]]:
    """``count`` handwritten digits the classifier never saw, as 64x64 PNGs (dark ink on
    white, as scanned), with their true digit."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    digits = load_digits()
    available = len(digits.target) - HELD_OUT_FROM
    if not 1 <= count <= available:
        raise ValueError(f"images must be between 1 and {available} (the held-out samples)")
    samples = []
    for index in range(HELD_OUT_FROM, HELD_OUT_FROM + count):
        ink = digits.images[index] / 16.0
        pixels = (255 - ink * 255).astype(np.uint8)
        image = Image.fromarray(pixels).resize((64, 64), Image.Resampling.NEAREST)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        samples.append((int(digits.target[index]), buffer.getvalue()))
    return samples


# --------------------------------------------------------------------------- HTTP


class Api:
    """One HTTP client per service; errors become :class:`StepFailedError` with the body."""

    def __init__(self, endpoints: Endpoints, timeout_s: float = 30.0) -> None:
        self.endpoints = endpoints
        self.api_key = ""
        self._clients = {
            name: httpx.AsyncClient(base_url=url, timeout=timeout_s)
            for name, url in endpoints.urls().items()
        }

    async def aclose(self) -> None:
        """Close every client."""
        for client in self._clients.values():
            await client.aclose()

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        step: str,
        expect: Iterable[int] = (200,),
        admin: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Send one request; the decoded JSON answer (``None`` for an empty one)."""
        client = self._clients[service]
        key = self.endpoints.admin_key if admin else self.api_key
        try:
            response = await client.request(
                method, path, headers={"Authorization": f"Bearer {key}"}, **kwargs
            )
        except httpx.HTTPError as exc:
            raise StepFailedError(
                step,
                f"{service} at {client.base_url} did not answer {method} {path}: "
                f"{type(exc).__name__}: {exc}",
            ) from exc
        if response.status_code not in set(expect):
            raise StepFailedError(
                step,
                f"{service} answered {method} {path} with HTTP {response.status_code}",
                body=response.text[:4000],
            )
        return response.json() if response.content else None


# --------------------------------------------------------------------------- the job


class DemoFlow:
    """The pre-labeling job; :meth:`run` does every step and returns what it measured."""

    def __init__(
        self, endpoints: Endpoints, options: DemoOptions, reporter: Reporter | None = None
    ) -> None:
        self.endpoints = endpoints
        self.options = options
        self.reporter = reporter or Reporter()
        self.result = DemoResult(dataset_name=options.name)
        self.api = Api(endpoints)
        self._started_upload = 0.0

    async def run(self) -> DemoResult:
        """Every step, in order; raises :class:`StepFailedError` at the first failure."""
        try:
            await self.create_project()
            await self.deploy_model()
            await self.create_trigger()
            await self.create_task()
            await self.set_budget()
            await self.upload()
            await self.watch()
            await self.summarise()
            await self.wait_scale_to_zero()
            await self.read_billing()
        finally:
            self.reporter.close()
            await self.api.aclose()
        return self.result

    # ------------------------------------------------------------------ 1. project

    async def create_project(self) -> None:
        """A project, an API key for it and the dataset."""
        step = "create project"
        self.reporter.step(1, "Project, API key and dataset")
        r = self.result
        project = await self.api.call(
            "dataset",
            "POST",
            "/projects",
            step=step,
            expect=(201,),
            admin=True,
            json={"name": self.options.name},
        )
        r.project_id = project["id"]
        key = await self.api.call(
            "dataset",
            "POST",
            f"/projects/{r.project_id}/api-keys",
            step=step,
            expect=(201,),
            admin=True,
            json={"name": "demo"},
        )
        r.api_key = self.api.api_key = key["key"]
        dataset = await self.api.call(
            "dataset",
            "POST",
            "/datasets",
            step="create dataset",
            expect=(201,),
            json={"name": self.options.name, "description": "prelabel demo: handwritten digits"},
        )
        r.dataset_id = dataset["id"]
        self.reporter.done(
            f"project [bold]{r.project_id}[/], dataset [bold]{r.dataset_name}[/] ({r.dataset_id})"
        )

    # ------------------------------------------------------------------ 2. model service

    async def deploy_model(self) -> None:
        """Install the catalog model, deploy it (0..1 replicas) and wait until it is ready."""
        step = "deploy model"
        o, r = self.options, self.result
        self.reporter.step(2, f"Model service: catalog model {CATALOG_MODEL}, 0..1 replicas")
        catalog = await self.api.call("model-serving", "GET", "/catalog", step=step)
        if CATALOG_MODEL not in {entry["name"] for entry in catalog}:
            raise StepFailedError(step, f"the catalog has no {CATALOG_MODEL!r}", body=str(catalog))
        model = await self.api.call(
            "model-serving", "POST", f"/catalog/{CATALOG_MODEL}/install", step=step, expect=(201,)
        )
        r.model_id = model["id"]
        service = await self.api.call(
            "model-serving",
            "POST",
            "/services",
            step=step,
            expect=(201,),
            json={
                "model_id": r.model_id,
                "name": "digits",
                "min_replicas": 0,
                "max_replicas": 1,
                "cooldown_seconds": o.cooldown_s,
                "drain_seconds": o.drain_s,
            },
        )
        r.service_id = service["id"]
        started = time.monotonic()
        # model-serving loads the model once to check it (then unloads it: 0 replicas).
        state = service
        while state["status"] != "ready":
            if state["status"] == "failed":
                raise StepFailedError(step, "the model service failed to deploy", body=str(state))
            self._deadline(started, o.deadline_s, step, f"service status {state['status']}")
            await asyncio.sleep(o.poll_s)
            state = await self.api.call(
                "model-serving", "GET", f"/services/{r.service_id}", step=step
            )
        # The router learns of the service from service.deployed.v1; a trigger needs it.
        while True:
            known = await self.api.call(
                "trigger-router",
                "GET",
                f"/services/{r.service_id}",
                step=step,
                expect=(200, 404),
            )
            if known and known.get("status") == "ready":
                r.replicas_at_deploy = int(known["actual_replicas"])
                break
            self._deadline(
                started,
                o.deadline_s,
                step,
                f"the trigger-router to see the service ready (it answers {known})",
            )
            await asyncio.sleep(o.poll_s)
        self.reporter.done(
            f"model {r.model_id} deployed as service [bold]{r.service_id}[/] "
            f"(ready after {time.monotonic() - started:.1f}s; {r.replicas_at_deploy} replicas "
            f"running, cooldown {o.cooldown_s:g}s)"
        )

    # ------------------------------------------------------------------ 3. trigger

    async def create_trigger(self) -> None:
        """Predict on every new image under /digits of the dataset."""
        r = self.result
        self.reporter.step(3, "Trigger: new images under /digits -> predict")
        spec_filter = {
            "dataset_id": r.dataset_id,
            "metadata.system.mimetype": "image/*",
            "dir": f"{REMOTE_DIR}/**",
        }
        trigger = await self.api.call(
            "trigger-router",
            "POST",
            "/triggers",
            step="create trigger",
            expect=(201,),
            json={
                "name": f"{self.options.name}-digits",
                "spec": {
                    "resource": "Item",
                    "actions": ["Created"],
                    "execution_mode": "Once",
                    "filter": spec_filter,
                    "operation": {"type": "predict", "service_id": r.service_id},
                },
            },
        )
        r.trigger_id = trigger["id"]
        self.reporter.done(f"trigger {r.trigger_id} on Created, filter {spec_filter}")

    # ------------------------------------------------------------------ 4. task

    async def create_task(self) -> None:
        """A labeling task that takes every item the service predicts on."""
        r = self.result
        self.reporter.step(4, "Labeling task fed by the service's predictions")
        task = await self.api.call(
            "annotation",
            "POST",
            "/tasks",
            step="create task",
            expect=(201,),
            json={
                "name": f"review {r.dataset_name}",
                "dataset_id": r.dataset_id,
                "auto_add_from_services": [r.service_id],
            },
        )
        r.task_id = task["id"]
        self.reporter.done(f"task {r.task_id}: items enter when a prediction lands")

    # ------------------------------------------------------------------ 5. budget

    async def set_budget(self) -> None:
        """The project's automation budget."""
        self.reporter.step(5, "Automation budget")
        budget = await self.api.call(
            "billing",
            "PUT",
            "/budget",
            step="set budget",
            json={"amount": str(self.options.budget)},
        )
        self.reporter.done(f"budget {budget['budget']} (spent {budget['spent']})")

    # ------------------------------------------------------------------ 6. upload

    async def upload(self) -> None:
        """Render the digits and upload them with the SDK, ``{"truth": d}`` on each."""
        step = "upload"
        r, o = self.result, self.options
        self.reporter.step(6, f"Upload {o.images} handwritten digits (SDK, {REMOTE_DIR})")
        try:
            samples = digit_samples(o.images)
        except ValueError as exc:
            raise StepFailedError(step, str(exc)) from exc
        by_digit: dict[int, list[tuple[int, bytes]]] = {}
        for index, (digit, png) in enumerate(samples):
            by_digit.setdefault(digit, []).append((index, png))
        uploaded = failed = 0
        reasons: list[str] = []
        self.reporter.upload_started(len(samples))
        self._started_upload = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="prelabel-demo-") as tmp:
            async with PrelabelClient(self.endpoints.dataset, r.api_key) as client:
                uploader = Uploader(
                    client, concurrency=o.upload_concurrency, progress=_UploadHooks(self.reporter)
                )
                # The SDK gives one metadata to a whole upload: one upload per digit.
                for digit, entries in sorted(by_digit.items()):
                    files = []
                    for index, png in entries:
                        path = Path(tmp) / f"{index:03d}.png"
                        path.write_bytes(png)
                        files.append(LocalFile(path, REMOTE_DIR, len(png)))
                    try:
                        summary = await uploader.upload(
                            files, r.dataset_id, metadata={"truth": digit}
                        )
                    except ApiError as exc:
                        raise StepFailedError(step, str(exc), body=exc.message) from exc
                    uploaded += len(summary.uploaded)
                    failed += len(summary.failed)
                    reasons += [f"{f.file.name}: {f.reason}" for f in summary.failed]
        self.reporter.upload_finished()
        r.uploaded = uploaded
        r.upload_s = time.monotonic() - self._started_upload
        if failed or not uploaded:
            raise StepFailedError(
                step, f"{failed} of {len(samples)} files failed", body="\n".join(reasons[:20])
            )
        self.reporter.done(f"{uploaded} items uploaded in {r.upload_s:.1f}s")

    # ------------------------------------------------------------------ 7. watch

    async def snapshot(self, step: str) -> Snapshot:
        """Executions, replicas, annotations and task items right now."""
        r = self.result
        counts, service, annotations, progress = await asyncio.gather(
            self.api.call(
                "trigger-router",
                "GET",
                "/executions/counts",
                step=step,
                params={"service_id": r.service_id},
            ),
            self.api.call("trigger-router", "GET", f"/services/{r.service_id}", step=step),
            self.api.call(
                "annotation",
                "GET",
                "/annotations",
                step=step,
                params={"dataset_id": r.dataset_id, "limit": 10_000},
            ),
            self.api.call("annotation", "GET", f"/tasks/{r.task_id}/progress", step=step),
        )
        return Snapshot(
            elapsed_s=time.monotonic() - self._started_upload,
            executions={k: int(v) for k, v in counts.items()},
            desired_replicas=int(service["desired_replicas"]),
            actual_replicas=int(service["actual_replicas"]),
            running_replicas=int(service["running_replicas"]),
            annotations=len(annotations),
            task_items=int(progress["total"]),
            pending_review=int(progress["counts"]["pending-review"]),
            uploaded=r.uploaded,
        )

    async def watch(self) -> None:
        """Until every execution is final and its annotations and task item are in."""
        step = "wait for predictions"
        r, o = self.result, self.options
        self.reporter.step(7, "Pre-labeling: executions, replicas, annotations, task")
        try:
            while True:
                snap = await self.snapshot(step)
                r.max_replicas_seen = max(r.max_replicas_seen, snap.actual_replicas)
                self.reporter.watch(snap)
                if snap.total >= r.uploaded and snap.finished >= snap.total:
                    success = snap.executions.get("success", 0)
                    if r.all_done_s is None:
                        r.all_done_s = snap.elapsed_s
                    # Annotations and task items follow the outcomes over the broker.
                    if snap.annotations >= success and snap.task_items >= success:
                        break
                if time.monotonic() - self._started_upload > o.deadline_s:
                    raise StepFailedError(
                        step,
                        f"not done within {o.deadline_s:g}s: {snap.total}/{r.uploaded} "
                        f"executions created, {snap.finished} finished "
                        f"({dict(snap.executions)}), {snap.annotations} annotations, "
                        f"{snap.task_items} task items, replicas desired/actual "
                        f"{snap.desired_replicas}/{snap.actual_replicas}",
                        body=await self._failure_hints(snap),
                    )
                await asyncio.sleep(o.poll_s)
        finally:
            self.reporter.watch_finished()
        r.executions = dict(snap.executions)
        r.annotations = snap.annotations
        self.reporter.done(
            f"{snap.executions.get('success', 0)} succeeded, "
            f"{snap.executions.get('failed', 0)} failed in {r.all_done_s:.1f}s; "
            f"{snap.annotations} annotations, {snap.task_items} items in the task"
        )

    async def _failure_hints(self, snap: Snapshot) -> str:
        """What explains a stuck job: failed executions, dead letters, idle scaling."""
        r = self.result
        lines = []
        waiting = snap.executions.get("queued", 0) + snap.executions.get("in-progress", 0)
        if snap.total < r.uploaded:
            lines.append(
                "the trigger fired for fewer items than were uploaded: see "
                "trigger-router.log (item events, filter)"
            )
        if waiting and snap.desired_replicas == 0:
            lines.append(
                "work is queued but the autoscaler wants 0 replicas: see trigger-router.log"
            )
        elif waiting and snap.actual_replicas > 0:
            lines.append(
                "replicas run but the work does not move: worker output is in "
                "trigger-router.log (the local backend's children)"
            )
        try:
            page = await self.api.call(
                "trigger-router",
                "GET",
                "/executions",
                step="diagnose",
                params={"service_id": r.service_id, "status": "failed", "page_size": 5},
            )
            lines += [f"execution {e['id']}: {e['error']}" for e in page["items"]]
            letters = await self.api.call(
                "model-serving",
                "GET",
                f"/services/{r.service_id}/dead-letters",
                step="diagnose",
                params={"limit": 5},
            )
            lines += [f"dead letter {d['execution_id']}: {d['reason']}" for d in letters]
        except StepFailedError as exc:
            lines.append(str(exc))
        return "\n".join(lines) or "(no failed executions, no dead letters)"

    # ------------------------------------------------------------------ 8. summary

    async def executions(self, step: str) -> list[dict[str, Any]]:
        """Every execution of the service (oldest first)."""
        found: list[dict[str, Any]] = []
        page = 0
        while True:
            answer = await self.api.call(
                "trigger-router",
                "GET",
                "/executions",
                step=step,
                params={"service_id": self.result.service_id, "page": page, "page_size": 500},
            )
            found += answer["items"]
            if not answer["has_next"]:
                return sorted(found, key=lambda e: e["created_at"])
            page += 1

    async def summarise(self) -> None:
        """Cold start, accuracy, reviews and acceptance."""
        step = "summary"
        r = self.result
        self.reporter.step(8, "Results: cold start, accuracy, review, acceptance")
        executions = await self.executions(step)
        queued = [e for e in executions if e["queued_at"] and e["started_at"]]
        if queued:
            first = min(queued, key=lambda e: e["queued_at"])
            r.cold_start_s = (_at(first["started_at"]) - _at(first["queued_at"])).total_seconds()
        r.cold_start_executions = sum(1 for e in executions if e["cold_start"])
        finished = [_at(e["finished_at"]) for e in executions if e["finished_at"]]
        if finished and queued:
            # Ledger times are the router's clock: measured from the first queueing.
            earliest = min(_at(e["queued_at"]) for e in queued)
            r.first_prediction_s = (min(finished) - earliest).total_seconds()

        predicted = await self._predicted_labels(step)
        truths = await self._truths(step)
        for item_id, truth in truths.items():
            label = predicted.get(item_id)
            if label is None:
                continue
            r.compared += 1
            if label == str(truth):
                r.correct += 1
            else:
                r.confusions.append((item_id, truth, label))
        await self.review(step, truths)
        r.task_progress = await self.api.call(
            "annotation", "GET", f"/tasks/{r.task_id}/progress", step=step
        )
        r.acceptance = await self.api.call(
            "annotation", "GET", f"/tasks/{r.task_id}/acceptance", step=step
        )
        rate = r.acceptance_rate
        self.reporter.done(
            f"accuracy {r.correct}/{r.compared}; reviewed {len(r.review.approved)} approved, "
            f"{len(r.review.corrected)} corrected; acceptance "
            + (f"{rate:.0%}" if rate is not None else "n/a")
        )

    async def _predicted_labels(self, step: str) -> dict[str, str]:
        """Item id -> the model's most confident label."""
        annotations = await self.api.call(
            "annotation",
            "GET",
            "/annotations",
            step=step,
            params={"dataset_id": self.result.dataset_id, "limit": 10_000},
        )
        best: dict[str, tuple[float, str]] = {}
        for a in annotations:
            if a["source"] != "model":
                continue
            confidence = float(a["confidence"] or 0.0)
            if a["item_id"] not in best or confidence > best[a["item_id"]][0]:
                best[a["item_id"]] = (confidence, a["label"])
        return {item: label for item, (_, label) in best.items()}

    async def _truths(self, step: str) -> dict[str, int]:
        """Item id -> ``metadata.user.truth``, read back from the dataset service."""
        truths: dict[str, int] = {}
        async with PrelabelClient(self.endpoints.dataset, self.result.api_key) as client:
            try:
                async for item in client.iter_items(
                    self.result.dataset_id, {"dir": f"{REMOTE_DIR}/**"}
                ):
                    truth = (item.metadata.get("user") or {}).get("truth")
                    if isinstance(truth, int):
                        truths[item.id] = truth
            except ApiError as exc:
                raise StepFailedError(step, f"listing items: {exc}", body=exc.message) from exc
        return truths

    async def review(self, step: str, truths: Mapping[str, int]) -> None:
        """Approve a few right predictions and correct a wrong one (by its truth)."""
        r, o = self.result, self.options
        page = await self.api.call(
            "annotation",
            "GET",
            f"/tasks/{r.task_id}/items",
            step=step,
            params={"status": "pending-review", "limit": 1000},
        )
        pending = page["items"]
        right = [t for t in pending if _label_of(t) == _truth_label(truths, t["item_id"])]
        wrong = [t for t in pending if t not in right and _label_of(t) is not None]
        # With no mistake to fix, "correct" one right item anyway: the reviewer relabels it
        # to the same digit, which still counts as a change against the model.
        to_correct = (wrong or [t for t in right if _label_of(t) is not None])[: o.correct]
        to_approve = [t for t in right if t not in to_correct][: o.approve]
        for task_item in to_approve:
            await self._review(step, task_item["item_id"], "approve", [])
            r.review.approved.append(task_item["item_id"])
        for task_item in to_correct:
            annotation = _model_annotation(task_item)
            truth = truths.get(task_item["item_id"])
            label = str(truth) if truth is not None else str(annotation["label"])
            change = {"op": "update", "annotation_id": annotation["id"], "label": label}
            await self._review(step, task_item["item_id"], "correct", [change])
            r.review.corrected.append(task_item["item_id"])

    async def _review(
        self, step: str, item_id: str, action: str, corrections: list[dict[str, Any]]
    ) -> None:
        await self.api.call(
            "annotation",
            "POST",
            f"/tasks/{self.result.task_id}/items/{item_id}/review",
            step=f"{step} (review {action})",
            json={"action": action, "reviewer": "demo", "corrections": corrections},
        )

    # ------------------------------------------------------------------ scale to zero, billing

    async def wait_scale_to_zero(self) -> None:
        """Wait for the cooldown to take the service back to zero replicas."""
        step = "scale to zero"
        o, r = self.options, self.result
        started = time.monotonic()
        # When the watch saw the last execution finish (this process's clock).
        last_finished = self._started_upload + (r.all_done_s or 0.0)
        while True:
            service = await self.api.call(
                "trigger-router", "GET", f"/services/{r.service_id}", step=step
            )
            desired, actual = int(service["desired_replicas"]), int(service["actual_replicas"])
            running = int(service["running_replicas"])
            self.reporter.scaling(desired, actual, running, time.monotonic() - started)
            if desired == actual == running == 0:
                break
            self._deadline(
                started,
                o.cooldown_s + o.drain_s + o.scale_down_timeout_s,
                step,
                f"replicas desired/actual/running {desired}/{actual}/{running}",
            )
            await asyncio.sleep(o.poll_s)
        r.scaled_to_zero_s = time.monotonic() - last_finished

    async def read_billing(self) -> None:
        """Runtime and cost once billing has seen every replica stop."""
        step = "billing"
        r, o = self.result, self.options
        started = time.monotonic()
        while True:
            replicas = await self.api.call("billing", "GET", "/usage/replicas", step=step)
            if replicas and not any(rep["running"] for rep in replicas):
                break
            self._deadline(started, 30.0, step, f"billing to see every replica stop: {replicas}")
            await asyncio.sleep(o.poll_s)
        usage = await self.api.call(
            "billing", "GET", "/usage", step=step, params={"service_id": r.service_id}
        )
        r.runtime_seconds = Decimal(str(usage["total"]["runtime_seconds"]))
        r.cost = Decimal(str(usage["total"]["cost"]))
        r.predictions = int(usage["total"]["predictions"])
        r.budget = await self.api.call("billing", "GET", "/budget", step=step)
        self.reporter.done(
            f"service back at 0 replicas {r.scaled_to_zero_s:.1f}s after the last prediction; "
            f"billed {r.runtime_seconds:.1f} replica-seconds, cost {r.cost}"
        )

    @staticmethod
    def _deadline(started: float, limit: float, step: str, waiting_for: str) -> None:
        if time.monotonic() - started > limit:
            raise StepFailedError(step, f"gave up after {limit:g}s waiting for {waiting_for}")


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _model_annotation(task_item: Mapping[str, Any]) -> dict[str, Any]:
    models = [a for a in task_item["annotations"] if a["source"] == "model"]
    best: dict[str, Any] = max(models, key=lambda a: float(a["confidence"] or 0.0))
    return best


def _label_of(task_item: Mapping[str, Any]) -> str | None:
    if not any(a["source"] == "model" for a in task_item["annotations"]):
        return None
    return str(_model_annotation(task_item)["label"])


def _truth_label(truths: Mapping[str, int], item_id: str) -> str | None:
    truth = truths.get(item_id)
    return None if truth is None else str(truth)


# --------------------------------------------------------------------------- terminal


class RichReporter(Reporter):
    """Steps, an upload bar and a live view of the pipeline on a rich console."""

    STEPS = 8

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._upload_task: Any = None
        self._live: Live | None = None
        self._last_line = ""
        self._last_print = 0.0
        self._scale_status: Any = None

    def step(self, number: int, title: str) -> None:
        self.console.print(f"\n[bold cyan]\\[{number}/{self.STEPS}][/] [bold]{title}[/]")

    def done(self, message: str) -> None:
        self.console.print(f"  [green]✓[/] {message}")

    def upload_started(self, total: int) -> None:
        self._progress = Progress(
            TextColumn("  uploading"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=self.console,
        )
        self._upload_task = self._progress.add_task("", total=total)
        self._progress.start()

    def upload_advanced(self, name: str, status: str) -> None:
        if self._progress is not None:
            self._progress.update(self._upload_task, advance=1, description=f"{name} {status}")

    def upload_finished(self) -> None:
        if self._progress is not None:
            self._progress.update(self._upload_task, description="")
            self._progress.stop()
            self._progress = None

    def watch(self, snapshot: Snapshot) -> None:
        if not self.console.is_terminal:
            # Logs and `make` output: a line when something changed, at most every 2 s.
            line = _watch_line(snapshot)
            if line != self._last_line and time.monotonic() - self._last_print >= 2.0:
                self.console.print(f"  {line}", highlight=False)
                self._last_line, self._last_print = line, time.monotonic()
            return
        if self._live is None:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        self._live.update(_watch_view(snapshot))

    def watch_finished(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        elif self._last_line:
            self._last_line = ""

    def scaling(self, desired: int, actual: int, running: int, waited_s: float) -> None:
        message = (
            f"waiting for the cooldown: replicas desired {desired}, running {actual} "
            f"({waited_s:.0f}s)"
        )
        if not self.console.is_terminal:
            if time.monotonic() - self._last_print >= 5.0:
                self.console.print(f"  {message}", highlight=False)
                self._last_print = time.monotonic()
            return
        if self._scale_status is None:
            self._scale_status = self.console.status(message)
            self._scale_status.start()
        self._scale_status.update(message)
        if desired == actual == running == 0:
            self._scale_status.stop()
            self._scale_status = None

    def close(self) -> None:
        self.upload_finished()
        self.watch_finished()
        if self._scale_status is not None:
            self._scale_status.stop()
            self._scale_status = None


def _watch_line(s: Snapshot) -> str:
    e = s.executions
    return (
        f"{s.elapsed_s:5.1f}s executions {s.total}/{s.uploaded}: "
        f"queued {e.get('queued', 0)}, in-progress {e.get('in-progress', 0)}, "
        f"success {e.get('success', 0)}, failed {e.get('failed', 0)} | replicas "
        f"{s.actual_replicas}/{s.desired_replicas} | annotations {s.annotations} | "
        f"task {s.task_items} ({s.pending_review} pending review)"
    )


def _watch_view(s: Snapshot) -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    e = s.executions
    statuses = ", ".join(f"{k} {v}" for k, v in e.items() if v) or "none yet"
    bar_width = 30
    done = int(bar_width * s.finished / s.uploaded) if s.uploaded else 0
    table.add_row(
        "executions",
        f"[green]{'█' * done}[/][dim]{'░' * (bar_width - done)}[/] "
        f"{s.finished}/{s.uploaded} finished ({statuses})",
    )
    replicas = f"{s.actual_replicas} running, {s.desired_replicas} wanted"
    if s.actual_replicas == 0 and s.desired_replicas > 0:
        replicas += " [yellow](cold start: worker starting, model loading)[/]"
    table.add_row("replicas", replicas)
    table.add_row("annotations", f"{s.annotations} stored")
    table.add_row("task", f"{s.task_items} items, {s.pending_review} pending review")
    return Panel(table, title=f"pre-labeling ({s.elapsed_s:.1f}s)", expand=False)


def render_summary(console: Console, r: DemoResult) -> None:
    """The results table."""
    table = Table(title="prelabel demo results", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()

    def seconds(value: float | None) -> str:
        return f"{value:.2f} s" if value is not None else "n/a"

    table.add_row("items uploaded", f"{r.uploaded} in {r.upload_s:.1f} s")
    table.add_row(
        "executions",
        f"{r.executions.get('success', 0)} success, {r.executions.get('failed', 0)} failed "
        f"(all finished {seconds(r.all_done_s)} after the upload began)",
    )
    table.add_row(
        "cold start",
        f"{seconds(r.cold_start_s)} queued -> started for the first execution "
        f"({_plural(r.cold_start_executions, 'execution')} waited for it); replicas "
        f"{r.replicas_at_deploy} -> {r.max_replicas_seen} -> 0",
    )
    table.add_row("first prediction", f"{seconds(r.first_prediction_s)} after the first queueing")
    accuracy = f"{r.accuracy:.1%}" if r.accuracy is not None else "n/a"
    wrong = ", ".join(f"{truth}->{label}" for _, truth, label in r.confusions[:8])
    table.add_row(
        "accuracy vs truth",
        f"{accuracy} ({r.correct}/{r.compared})" + (f"; mistakes {wrong}" if wrong else ""),
    )
    counts = r.task_progress.get("counts", {})
    table.add_row(
        "task",
        f"{r.task_progress.get('total', 0)} items: "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + f" ({r.task_progress.get('done_fraction', 0.0):.0%} reviewed)",
    )
    rate = r.acceptance_rate
    table.add_row(
        "acceptance rate",
        (f"{rate:.0%}" if rate is not None else "n/a")
        + f" (approved {len(r.review.approved)}, corrected {len(r.review.corrected)})",
    )
    table.add_row(
        "billing",
        f"{r.runtime_seconds:.1f} replica-seconds, cost {r.cost}, {r.predictions} predictions; "
        f"budget {r.budget.get('budget')} spent {r.budget.get('spent')} "
        f"remaining {r.budget.get('remaining')}",
    )
    table.add_row("scale to zero", f"{seconds(r.scaled_to_zero_s)} after the last prediction")
    console.print()
    console.print(table)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def explore_commands(endpoints: Endpoints, r: DemoResult) -> list[str]:
    """Copy-paste commands to look around what the demo made."""
    key = shlex.quote(r.api_key)
    auth = '-H "Authorization: Bearer $PRELABEL_API_KEY"'
    url_env = (
        f" PRELABEL_URL={endpoints.dataset}" if endpoints.dataset != "http://127.0.0.1:8081" else ""
    )
    return [
        f"export PRELABEL_API_KEY={key}{url_env}",
        f".venv/bin/prelabel items list --dataset {r.dataset_name} --limit 10",
        f"curl -s {auth} '{endpoints.trigger_router}/executions/counts?service_id={r.service_id}'",
        f"curl -s {auth} {endpoints.trigger_router}/services/{r.service_id}",
        f"curl -s {auth} '{endpoints.annotation}/annotations?dataset_id={r.dataset_id}&limit=5'",
        f"curl -s {auth} {endpoints.annotation}/tasks/{r.task_id}/progress",
        f"curl -s {auth} '{endpoints.annotation}/tasks/{r.task_id}/export?format=jsonl' | head",
        f"curl -s {auth} {endpoints.billing}/usage",
        f"curl -s {auth} {endpoints.model_serving}/services/{r.service_id}",
    ]


def _fail(console: Console, exc: StepFailedError) -> None:
    body = f"\n\n[bold]service answer:[/]\n{exc.body}" if exc.body else ""
    logs = StackConfig.from_env().logs_dir
    console.print(
        Panel(
            f"[bold]{exc.step}[/] failed: {exc.message}{body}\n\n"
            f"[dim]service logs: {logs}/<service>.log; `make status` shows what runs[/]",
            title="[red]prelabel demo failed[/]",
            border_style="red",
            expand=False,
        ),
        highlight=False,
    )


app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0] if __doc__ else None)


@app.command()
def main(
    images: int = typer.Option(50, min=1, max=297, help="Digits to upload."),
    deadline: float = typer.Option(180.0, min=1, help="Seconds for every prediction to land."),
    cooldown: float = typer.Option(10.0, min=0, help="Idle seconds before scaling to zero."),
    budget: str = typer.Option("5.00", help="The project's automation budget."),
    show_stack: bool = typer.Option(True, help="Print the stack's status table at the end."),
) -> None:
    """Run a pre-labeling job end to end against the running services."""
    console = Console(width=None if sys.stdout.isatty() else 140)
    endpoints = Endpoints.from_stack()
    options = DemoOptions(
        images=images, deadline_s=deadline, cooldown_s=cooldown, budget=Decimal(budget)
    )
    console.print(
        Panel(
            f"Pre-label {images} handwritten digits: upload -> trigger -> model service scaled "
            f"from zero on Triton -> annotations -> labeling task -> review -> billing.\n"
            f"[dim]dataset {endpoints.dataset}  trigger-router {endpoints.trigger_router}  "
            f"model-serving {endpoints.model_serving}  annotation {endpoints.annotation}  "
            f"billing {endpoints.billing}[/]",
            title="[bold]prelabel demo[/]",
            expand=False,
        )
    )
    started = time.monotonic()
    try:
        result = asyncio.run(DemoFlow(endpoints, options, RichReporter(console)).run())
    except StepFailedError as exc:
        _fail(console, exc)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    render_summary(console, result)
    failed = result.executions.get("failed", 0)
    if show_stack:
        console.print()
        config = StackConfig.from_env()
        render(
            [c.status() for c in Stack(config, with_services=True).components], "what runs where"
        )
    console.print("\n[bold]Explore[/] (copy and paste):")
    for line in explore_commands(endpoints, result):
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    console.print(f"\n[green]demo finished in {time.monotonic() - started:.0f}s[/]")
    if failed:
        console.print(f"[red]{failed} executions failed[/]")
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
