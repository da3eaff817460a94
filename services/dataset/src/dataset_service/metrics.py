"""Prometheus metrics of the dataset service (besides the shared handler metrics)."""

from __future__ import annotations

from functools import cache

from prometheus_client import Counter, Histogram

from common.observability import metric_name
from common.topology import DATASET


@cache
def thumbnails_total() -> Counter:
    """Thumbnails answered, by where the bytes came from: ``generated`` (decoded and
    encoded by this request, then stored) or ``stored`` (read back from S3)."""
    return Counter(
        metric_name(DATASET, "thumbnails_total"),
        "Thumbnails answered, by source: generated (and stored) or stored (read from S3).",
        ["source"],
    )


@cache
def thumbnail_render_seconds() -> Histogram:
    """Time to decode an image and encode its thumbnail (in a worker thread)."""
    return Histogram(
        metric_name(DATASET, "thumbnail_render_seconds"),
        "Decode + resize + encode time of one thumbnail.",
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    )
