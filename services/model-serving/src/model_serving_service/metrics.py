"""Prometheus metrics of model-serving (one set per process: the registry is global)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from common.observability import metric_name

SERVICE = "model-serving"

PREDICTIONS = Counter(
    metric_name(SERVICE, "predictions_total"),
    "Predict requests settled by workers, by outcome (completed, failed, duplicate, "
    "dead_lettered, requeued, cancelled: skipped because the execution was cancelled).",
    ["outcome"],
)
BATCH_SIZE = Histogram(
    metric_name(SERVICE, "batch_size_items"),
    "Items per Triton call made by workers.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
INLINE_BLOBS = Counter(
    metric_name(SERVICE, "inline_blobs_total"),
    "Predict requests that carried their item's blob inline, by result (used: predicted "
    "from those bytes without an S3 read; mismatch: not the item's content by SHA-256, "
    "read from S3 instead).",
    ["result"],
)
BLOB_READS = Counter(
    metric_name(SERVICE, "blob_reads_total"),
    "Item blobs workers read from S3 (requests without a usable inline blob).",
)
TRITON_SECONDS = Histogram(
    metric_name(SERVICE, "triton_infer_duration_seconds"),
    "Duration of one Triton inference call (one batch).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
REQUEST_SECONDS = Histogram(
    metric_name(SERVICE, "request_duration_seconds"),
    "From a worker receiving a predict request to its outcome being recorded.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
MODEL_LOAD_SECONDS = Histogram(
    metric_name(SERVICE, "model_load_duration_seconds"),
    "Time a replica waited for its model to be loaded on Triton (cold start).",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
TRITON_RETRIES = Counter(
    metric_name(SERVICE, "triton_retries_total"),
    "Triton calls retried because Triton was unreachable.",
)
