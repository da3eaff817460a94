"""Prometheus objects of the annotation service (besides the handler metrics every
service has)."""

from __future__ import annotations

from functools import cache

from prometheus_client import Counter

from common.observability import metric_name
from common.topology import ANNOTATION


@cache
def annotations_stored() -> Counter:
    """Annotations written from predictions (redeliveries add nothing)."""
    return Counter(
        metric_name(ANNOTATION, "annotations_stored_total"),
        "Model annotations stored from prediction.completed.v1.",
    )
