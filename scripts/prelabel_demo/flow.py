"""The pre-labeling job itself, on the prelabel SDK (no presentation: see ``reporting``)."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path

from prelabel_client import ApiError, ClientError, LocalFile, Prelabel
from prelabel_client.models import Annotation, Batch, Correction, Scaling, TaskItem
from prelabel_demo.reporting import Reporter, UploadHooks
from prelabel_demo.results import (
    BATCH_FILTER,
    CATALOG_MODEL,
    REMOTE_DIR,
    DemoOptions,
    DemoResult,
    Endpoints,
    Snapshot,
    StepFailedError,
)
from prelabel_demo.samples import digit_samples


@contextlib.contextmanager
def step_of(step: str) -> Iterator[None]:
    """SDK errors (with the service's message) and timeouts as a failed ``step``."""
    try:
        yield
    except ApiError as exc:
        raise StepFailedError(step, str(exc), body=exc.message) from exc
    except (ClientError, TimeoutError) as exc:
        raise StepFailedError(step, str(exc)) from exc


class DemoFlow:
    """The pre-labeling job; :meth:`run` does every step and returns what it measured."""

    def __init__(
        self, endpoints: Endpoints, options: DemoOptions, reporter: Reporter | None = None
    ) -> None:
        self.endpoints = endpoints
        self.options = options
        self.reporter = reporter or Reporter()
        self.result = DemoResult(dataset_name=options.name)
        self._client: Prelabel | None = None
        self._started_upload = 0.0

    @property
    def client(self) -> Prelabel:
        """The SDK with the demo project's key (once step 1 made it)."""
        if self._client is None:
            raise RuntimeError("no project yet: create_project() comes first")
        return self._client

    async def run(self) -> DemoResult:
        """Every step, in order; raises :class:`StepFailedError` at the first failure."""
        try:
            await self.create_project()
            await self.deploy_model()
            await self.create_task()
            await self.create_pipeline()
            await self.upload()
            await self.watch()
            await self.predict_on_filter()
            await self.summarise()
            await self.wait_scale_to_zero()
            await self.read_billing()
        finally:
            self.reporter.close()
            if self._client is not None:
                await self._client.aclose()
        return self.result

    # ------------------------------------------------------------------ 1. project

    async def create_project(self) -> None:
        """A project, an API key for it (the admin key), the dataset and the budget."""
        self.reporter.step(1, "Project, API key, dataset and automation budget")
        r, admin_key = self.result, self.endpoints.admin_key
        urls = self.endpoints.for_client()
        with step_of("create project"):
            async with Prelabel(urls, admin_key, admin_key=admin_key) as admin:
                project = await admin.projects.create(self.options.name)
                key = await admin.projects.create_api_key(project.id, "demo")
        r.project_id = project.id
        r.api_key = str(key.key)
        self._client = Prelabel(urls, r.api_key, timeout_s=60.0)
        with step_of("create dataset"):
            dataset = await self.client.datasets.create(
                self.options.name, "prelabel demo: handwritten digits"
            )
        r.dataset_id = dataset.id
        with step_of("set budget"):
            budget = await self.client.billing.set_budget(self.options.budget)
        self.reporter.done(
            f"project [bold]{r.project_id}[/], dataset [bold]{r.dataset_name}[/] "
            f"({r.dataset_id}), budget {budget.budget}"
        )

    # ------------------------------------------------------------------ 2. model service

    async def deploy_model(self) -> None:
        """Install the catalog model, deploy it (0..1 replicas) and wait until it is ready."""
        step = "deploy model"
        o, r = self.options, self.result
        self.reporter.step(2, f"Model service: catalog model {CATALOG_MODEL}, 0..1 replicas")
        with step_of(step):
            catalog = await self.client.models.catalog()
            if CATALOG_MODEL not in {entry.name for entry in catalog}:
                raise StepFailedError(
                    step, f"the catalog has no {CATALOG_MODEL!r}", body=str(catalog)
                )
            model = await self.client.models.install(CATALOG_MODEL)
            r.model_id = model.id
            scaling = Scaling(
                min_replicas=0,
                max_replicas=1,
                cooldown_seconds=o.cooldown_s,
                drain_seconds=o.drain_s,
            )
            service = await self.client.services.deploy(model.id, "digits", scaling)
            r.service_id = service.id
            started = time.monotonic()
            # model-serving loads the model once to check it (then unloads it: 0 replicas);
            # the router learns of the service from service.deployed.v1.
            known = await self.client.services.wait_ready(
                service.id, timeout_s=o.deadline_s, poll_s=o.poll_s
            )
        r.replicas_at_deploy = known.actual_replicas
        self.reporter.done(
            f"model {r.model_id} deployed as service [bold]{r.service_id}[/] "
            f"(ready after {time.monotonic() - started:.1f}s; {r.replicas_at_deploy} replicas "
            f"running, cooldown {o.cooldown_s:g}s)"
        )

    # ------------------------------------------------------------------ 3. task

    async def create_task(self) -> None:
        """The labeling task the pipeline's task node fills."""
        r = self.result
        self.reporter.step(3, "Labeling task (the pipeline's last node)")
        with step_of("create task"):
            task = await self.client.tasks.create(f"review {r.dataset_name}", r.dataset_id)
        r.task_id = task.id
        self.reporter.done(f"task {r.task_id}")

    # ------------------------------------------------------------------ 4. pipeline

    async def create_pipeline(self) -> None:
        """Dataset (trigger: new images under /digits) -> Predict -> Task, started."""
        r = self.result
        self.reporter.step(4, "Pipeline: Dataset (trigger on Created) -> Predict -> Task")
        trigger_filter = {"metadata.system.mimetype": "image/*", "dir": f"{REMOTE_DIR}/**"}
        definition = {
            "name": f"{self.options.name}-digits",
            "nodes": [
                {
                    "id": "dataset",
                    "type": "dataset",
                    "config": {
                        "dataset_id": r.dataset_id,
                        "trigger": {
                            "actions": ["Created"],
                            "execution_mode": "Once",
                            "filter": trigger_filter,
                        },
                    },
                },
                {"id": "predict", "type": "predict", "config": {"service_id": r.service_id}},
                {"id": "review", "type": "task", "config": {"task_id": r.task_id}},
            ],
            "edges": [
                {"src": "dataset", "tgt": "predict"},
                {"src": "predict", "tgt": "review"},
            ],
        }
        with step_of("create pipeline"):
            pipeline = await self.client.pipelines.create(definition)
            pipeline = await self.client.pipelines.start(pipeline.id)
        r.pipeline_id = pipeline.id
        self.reporter.done(
            f"pipeline {r.pipeline_id} {pipeline.status}: dataset -> predict on "
            f"{r.service_id} -> task {r.task_id}; trigger on Created, filter {trigger_filter}"
        )

    # ------------------------------------------------------------------ 6. upload

    async def upload(self) -> None:
        """Render the digits and upload them with the SDK, ``{"truth": d}`` on each."""
        step = "upload"
        r, o = self.result, self.options
        self.reporter.step(5, f"Upload {o.images} handwritten digits (SDK, {REMOTE_DIR})")
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
        uploader = self.client.uploader(
            concurrency=o.upload_concurrency, progress=UploadHooks(self.reporter)
        )
        with tempfile.TemporaryDirectory(prefix="prelabel-demo-") as tmp, step_of(step):
            # The SDK gives one metadata to a whole upload: one upload per digit.
            for digit, entries in sorted(by_digit.items()):
                files = []
                for index, png in entries:
                    path = Path(tmp) / f"{index:03d}.png"
                    path.write_bytes(png)
                    files.append(LocalFile(path, REMOTE_DIR, len(png)))
                summary = await uploader.upload(files, r.dataset_id, metadata={"truth": digit})
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

    async def snapshot(self) -> Snapshot:
        """Executions, replicas, annotations and task items right now."""
        r, c = self.result, self.client
        counts, scaling, annotations, progress, pipeline = await asyncio.gather(
            c.executions.counts(service_id=r.service_id),
            c.services.scaling(r.service_id),
            c.annotations.list(dataset_id=r.dataset_id, limit=10_000),
            c.tasks.progress(r.task_id),
            c.pipelines.get(r.pipeline_id),
        )
        return Snapshot(
            elapsed_s=time.monotonic() - self._started_upload,
            executions=counts,
            desired_replicas=scaling.desired_replicas,
            actual_replicas=scaling.actual_replicas,
            running_replicas=scaling.running_replicas,
            annotations=len(annotations),
            task_items=progress.total,
            pending_review=progress.counts.get("pending-review", 0),
            uploaded=r.uploaded,
            pipeline_executions=dict(pipeline.executions),
        )

    async def watch(self) -> None:
        """Until every execution is final and its annotations and task item are in."""
        step = "wait for predictions"
        r, o = self.result, self.options
        self.reporter.step(6, "Pre-labeling through the pipeline: executions, replicas, task")
        try:
            while True:
                with step_of(step):
                    snap = await self.snapshot()
                r.max_replicas_seen = max(r.max_replicas_seen, snap.actual_replicas)
                self.reporter.watch(snap)
                if snap.total >= r.uploaded and snap.finished >= snap.total:
                    success = snap.executions.get("success", 0)
                    if r.all_done_s is None:
                        r.all_done_s = snap.elapsed_s
                    # Annotations and task items follow the outcomes over the broker; the
                    # pipeline execution ends once its task node has the item.
                    through = snap.pipeline_executions.get("success", 0)
                    if (
                        snap.annotations >= success
                        and snap.task_items >= success
                        and through >= success
                    ):
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
        r.pipeline_executions = dict(snap.pipeline_executions)
        r.annotations = snap.annotations
        self.reporter.done(
            f"{snap.executions.get('success', 0)} succeeded, "
            f"{snap.executions.get('failed', 0)} failed in {r.all_done_s:.1f}s; "
            f"{snap.pipeline_executions.get('success', 0)} pipeline executions through all "
            f"three nodes; {snap.annotations} annotations, {snap.task_items} items in the task"
        )

    # ------------------------------------------------------------------ 7. browser-style

    async def predict_on_filter(self) -> None:
        """Browser-style predict on a DQL filter over the same items: first as is (this
        model version already predicted them through the pipeline: all skipped), then
        with ``force`` (predicted again, new executions)."""
        step = "browser-style predict"
        r, o, batches = self.result, self.options, self.client.batches
        self.reporter.step(7, f"Browser-style predict on a DQL filter: {BATCH_FILTER}")
        with step_of(step):
            first = await batches.predict(
                r.service_id, dataset_id=r.dataset_id, filter=BATCH_FILTER
            )
        r.batch_items, r.batch_skipped = first.item_count, first.skipped
        if first.skipped != first.item_count:
            raise StepFailedError(
                step,
                f"batch {first.id}: {first.skipped} of {first.item_count} items skipped; the "
                "pipeline predicted every one of them with this model version",
                body=str(first.counts),
            )
        self.reporter.done(
            f"without --force: batch {first.id}, {first.item_count} items matched, "
            f"{first.skipped} skipped (already predicted by this model version), "
            f"{sum(n for s, n in first.counts.items() if s != 'skipped')} new executions"
        )
        with step_of(step):
            forced = await batches.predict(
                r.service_id, dataset_id=r.dataset_id, filter=BATCH_FILTER, force=True
            )
            last: Batch = forced
            async for seen in batches.watch(forced.id, poll_s=o.poll_s, timeout_s=o.deadline_s):
                last = seen
                scaling = await self.client.services.scaling(r.service_id)
                r.max_replicas_seen = max(r.max_replicas_seen, scaling.actual_replicas)
        r.batch_id = forced.id
        r.forced = dict(last.counts)
        self.reporter.done(
            f"with --force: batch {forced.id}, {last.item_count} items predicted again: "
            f"{last.counts.get('success', 0)} success, {last.counts.get('failed', 0)} failed"
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
            page = await self.client.executions.list(
                service_id=r.service_id, status="failed", page_size=5
            )
            lines += [f"execution {e.id}: {e.error}" for e in page.items]
            letters = await self.client.services.dead_letters(r.service_id, limit=5)
            lines += [f"dead letter {d.execution_id}: {d.reason}" for d in letters]
        except (ApiError, ClientError) as exc:
            lines.append(str(exc))
        return "\n".join(lines) or "(no failed executions, no dead letters)"

    # ------------------------------------------------------------------ 8. summary

    async def summarise(self) -> None:
        """Cold start, accuracy, reviews and acceptance."""
        step = "summary"
        r, c = self.result, self.client
        self.reporter.step(8, "Results: cold start, accuracy, review, acceptance, billing")
        with step_of(step):
            executions = [e async for e in c.executions.iter(service_id=r.service_id)]
            queued = [e for e in executions if e.queued_at and e.started_at]
            if queued:
                first = min(queued, key=lambda e: _at(e.queued_at))
                r.cold_start_s = (_at(first.started_at) - _at(first.queued_at)).total_seconds()
            r.cold_start_executions = sum(1 for e in executions if e.cold_start)
            finished = [e.finished_at for e in executions if e.finished_at]
            if finished and queued:
                # Ledger times are the router's clock: measured from the first queueing.
                earliest = min(_at(e.queued_at) for e in queued)
                r.first_prediction_s = (min(finished) - earliest).total_seconds()

            predicted = await self._predicted_labels()
            truths = await self._truths()
            for item_id, truth in truths.items():
                label = predicted.get(item_id)
                if label is None:
                    continue
                r.compared += 1
                if label == str(truth):
                    r.correct += 1
                else:
                    r.confusions.append((item_id, truth, label))
            await self.review(truths)
            progress = await c.tasks.progress(r.task_id)
            r.task_progress = progress.model_dump(mode="json")
            r.acceptance = [a.model_dump(mode="json") for a in await c.tasks.acceptance(r.task_id)]
        rate = r.acceptance_rate
        self.reporter.done(
            f"accuracy {r.correct}/{r.compared}; reviewed {len(r.review.approved)} approved, "
            f"{len(r.review.corrected)} corrected; acceptance "
            + (f"{rate:.0%}" if rate is not None else "n/a")
        )

    async def _predicted_labels(self) -> dict[str, str]:
        """Item id -> the model's most confident label."""
        best: dict[str, tuple[float, str]] = {}
        async for a in self.client.annotations.iter(dataset_id=self.result.dataset_id):
            if a.source != "model":
                continue
            confidence = float(a.confidence or 0.0)
            if a.item_id not in best or confidence > best[a.item_id][0]:
                best[a.item_id] = (confidence, a.label)
        return {item: label for item, (_, label) in best.items()}

    async def _truths(self) -> dict[str, int]:
        """Item id -> ``metadata.user.truth``, read back from the dataset service."""
        truths: dict[str, int] = {}
        async for item in self.client.items.iter(
            self.result.dataset_id, {"dir": f"{REMOTE_DIR}/**"}
        ):
            truth = (item.metadata.get("user") or {}).get("truth")
            if isinstance(truth, int):
                truths[item.id] = truth
        return truths

    async def review(self, truths: Mapping[str, int]) -> None:
        """Approve a few right predictions and correct a wrong one (by its truth)."""
        r, o, tasks = self.result, self.options, self.client.tasks
        page = await tasks.items(r.task_id, status="pending-review", limit=1000)
        pending = page.items
        right = [t for t in pending if _label_of(t) == _truth_label(truths, t.item_id)]
        wrong = [t for t in pending if t not in right and _label_of(t) is not None]
        # With no mistake to fix, "correct" one right item anyway: the reviewer relabels it
        # to the same digit, which still counts as a change against the model.
        to_correct = (wrong or [t for t in right if _label_of(t) is not None])[: o.correct]
        to_approve = [t for t in right if t not in to_correct][: o.approve]
        for task_item in to_approve:
            await tasks.review(r.task_id, task_item.item_id, "approve", reviewer="demo")
            r.review.approved.append(task_item.item_id)
        for task_item in to_correct:
            annotation = _model_annotation(task_item)
            truth = truths.get(task_item.item_id)
            label = str(truth) if truth is not None else annotation.label
            change = Correction(op="update", annotation_id=annotation.id, label=label)
            await tasks.review(
                r.task_id, task_item.item_id, "correct", reviewer="demo", corrections=[change]
            )
            r.review.corrected.append(task_item.item_id)

    # ------------------------------------------------------------------ scale to zero, billing

    async def wait_scale_to_zero(self) -> None:
        """Wait for the cooldown to take the service back to zero replicas."""
        step = "scale to zero"
        o, r = self.options, self.result
        started = time.monotonic()
        # When the watch saw the last execution finish (this process's clock).
        last_finished = self._started_upload + (r.all_done_s or 0.0)
        while True:
            with step_of(step):
                s = await self.client.services.scaling(r.service_id)
            self.reporter.scaling(
                s.desired_replicas,
                s.actual_replicas,
                s.running_replicas,
                time.monotonic() - started,
            )
            if s.desired_replicas == s.actual_replicas == s.running_replicas == 0:
                break
            _deadline(
                started,
                o.cooldown_s + o.drain_s + o.scale_down_timeout_s,
                step,
                "replicas desired/actual/running "
                f"{s.desired_replicas}/{s.actual_replicas}/{s.running_replicas}",
            )
            await asyncio.sleep(o.poll_s)
        r.scaled_to_zero_s = time.monotonic() - last_finished

    async def read_billing(self) -> None:
        """Runtime and cost once billing has seen every replica stop."""
        step = "billing"
        r, o, billing = self.result, self.options, self.client.billing
        started = time.monotonic()
        with step_of(step):
            while True:
                replicas = await billing.replicas()
                if replicas and not any(rep.running for rep in replicas):
                    break
                _deadline(started, 30.0, step, f"billing to see every replica stop: {replicas}")
                await asyncio.sleep(o.poll_s)
            usage = await billing.usage(service_id=r.service_id)
            r.budget = (await billing.budget()).model_dump(mode="json")
            # Cost per accepted label, once billing has counted the demo's reviews.
            reviewed = len(r.review.approved) + len(r.review.corrected)
            while True:
                report = await billing.models()
                rows = [m for m in report.models if m.service_id == r.service_id and m.model]
                if rows and rows[0].reviewed >= reviewed:
                    break
                _deadline(started, 60.0, step, f"billing to count {reviewed} reviews: {rows}")
                await asyncio.sleep(o.poll_s)
        r.runtime_seconds = usage.total.runtime_seconds
        r.cost = usage.total.cost
        r.predictions = usage.total.predictions
        r.model_usage = rows[0].model_dump(mode="json")
        per_label = rows[0].cost_per_accepted_label
        self.reporter.done(
            f"service back at 0 replicas {r.scaled_to_zero_s:.1f}s after the last prediction; "
            f"billed {r.runtime_seconds:.1f} replica-seconds, cost {r.cost}; cost per accepted "
            f"label {per_label if per_label is not None else 'n/a'}"
        )


def _deadline(started: float, limit: float, step: str, waiting_for: str) -> None:
    if time.monotonic() - started > limit:
        raise StepFailedError(step, f"gave up after {limit:g}s waiting for {waiting_for}")


def _at(value: datetime | None) -> datetime:
    if value is None:
        raise ValueError("no time")
    return value


def _model_annotation(task_item: TaskItem) -> Annotation:
    models = [a for a in task_item.annotations if a.source == "model"]
    return max(models, key=lambda a: float(a.confidence or 0.0))


def _label_of(task_item: TaskItem) -> str | None:
    if not any(a.source == "model" for a in task_item.annotations):
        return None
    return str(_model_annotation(task_item).label)


def _truth_label(truths: Mapping[str, int], item_id: str) -> str | None:
    truth = truths.get(item_id)
    return None if truth is None else str(truth)
