"""Predict requests in a worker: idempotency keys, outcome ids, retry timing."""

from __future__ import annotations

import re
import uuid


def backoff_delays(attempts: int, base: float, cap: float = 5.0) -> list[float]:
    """Delays between ``attempts`` tries: base, 2*base, 4*base ... capped."""
    return [min(cap, base * (2**i)) for i in range(max(0, attempts - 1))]


def execution_key(execution_id: str, attempt: int) -> str:
    """Idempotency key of one predict request: a redelivery has the same key; a deliberate
    rerun (a higher attempt) gets its own outcome."""
    return f"{execution_id}#{attempt}"


def outcome_event_id(key: str) -> str:
    """The outcome event's id, derived from the request's key: a duplicate outcome would
    carry the same id, so even the outbox keeps only one."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"prelabel:model-serving:outcome:{key}").hex


def is_last_delivery(delivery_count: int | None, delivery_limit: int) -> bool:
    """Whether a requeue would make the broker dead-letter the message.

    A quorum queue counts earlier failed deliveries in ``x-delivery-count`` and
    dead-letters once that count exceeds ``x-delivery-limit``.
    """
    return (delivery_count or 0) >= delivery_limit


def short_triton_reason(text: str) -> str:
    """Triton's error without the Python traceback it appends (``At: ...``)."""
    head = text.split("\n\nAt:", 1)[0].strip()
    return re.sub(r"\s+", " ", head)[:1000]
