"""What the job is given (options) and what it saw (snapshots, results)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from prelabel_client import Endpoints as ClientEndpoints

CATALOG_MODEL = "digits-classifier"
REMOTE_DIR = "/digits"
HELD_OUT_FROM = 1500
"""The catalog's digits classifier trains on scikit-learn's first 1500 samples."""
TERMINAL = ("success", "failed", "cancelled")
BATCH_FILTER: dict[str, Any] = {"dir": f"{REMOTE_DIR}/**", "metadata.user.truth": {"$lte": 4}}
"""The browser-style predict's DQL filter: the digits 0-4 among the uploaded ones."""


class StepFailedError(Exception):
    """A step of the job failed; ``body`` is the service's answer when there was one."""

    def __init__(self, step: str, message: str, body: str | None = None) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message
        self.body = body


@dataclass(frozen=True)
class Endpoints:
    """Base URLs of the five services and the dataset service's admin key.

    ``proxy_url`` is the one URL they share when they are behind the proxy (``make up``:
    nginx); the e2e tests give the services' own URLs and no proxy.
    """

    dataset: str
    trigger_router: str
    model_serving: str
    annotation: str
    billing: str
    admin_key: str
    proxy_url: str | None = None

    @classmethod
    def behind(cls, proxy_url: str, admin_key: str) -> Endpoints:
        """Every service at ``<proxy_url>/api/<service>``, as ``PRELABEL_URL`` clients see them."""
        urls = ClientEndpoints.resolve(proxy_url)
        return cls(
            dataset=urls.dataset,
            trigger_router=urls.trigger_router,
            model_serving=urls.model_serving,
            annotation=urls.annotation,
            billing=urls.billing,
            admin_key=admin_key,
            proxy_url=proxy_url.rstrip("/"),
        )

    def for_client(self) -> ClientEndpoints:
        """The SDK's view of the same URLs."""
        return ClientEndpoints(
            dataset=self.dataset,
            trigger_router=self.trigger_router,
            model_serving=self.model_serving,
            annotation=self.annotation,
            billing=self.billing,
        )

    def urls(self) -> dict[str, str]:
        """Service name -> base URL."""
        return {str(name): url for name, url in self.for_client().as_dict().items()}


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
    pipeline_executions: Mapping[str, int] = field(default_factory=dict)
    """The pipeline's executions per status (one per item that entered it)."""

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
    pipeline_id: str = ""
    task_id: str = ""
    uploaded: int = 0
    upload_s: float = 0.0
    executions: dict[str, int] = field(default_factory=dict)
    """The service's executions once the pipeline had every item through (before step 7)."""
    pipeline_executions: dict[str, int] = field(default_factory=dict)
    batch_items: int = 0
    """Items the browser-style predict's filter matched."""
    batch_skipped: int = 0
    """Of them, skipped without ``force`` (already predicted by this model version)."""
    batch_id: str = ""
    """The forced batch."""
    forced: dict[str, int] = field(default_factory=dict)
    """The forced batch's executions per status."""
    model_usage: dict[str, Any] = field(default_factory=dict)
    """Billing's row for the model version (``GET /usage/models``)."""
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
