"""Predict outcomes: one per request key, claimed and written to the outbox together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from common.envelope import CloudEvent
from common.messaging import claim_messages, claimed_messages, enqueue_many
from model_serving_service.repository.base import RepositoryBase

PREDICT_CONSUMER = "model_serving.predict"
"""Consumer name of predict outcomes in ``processed_messages`` (one row per request key)."""


@dataclass(frozen=True)
class Outcome:
    """One predict outcome to record: the request key and the event to publish."""

    key: str
    event: CloudEvent[Any]


class OutcomeRows(RepositoryBase):
    """Request-key claims (``processed_messages``) and the outbox."""

    async def claimed(self, keys: Sequence[str]) -> set[str]:
        """Which request keys already have an outcome."""
        return await claimed_messages(self.pool, PREDICT_CONSUMER, keys)

    async def record_outcomes(self, outcomes: Sequence[Outcome]) -> set[str]:
        """Claim each request key and write its outcome event, in one transaction.

        A key claimed before (a redelivered or duplicated request) gets no second
        outcome. Returns the keys recorded by this call.
        """
        if not outcomes:
            return set()
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await claim_messages(conn, PREDICT_CONSUMER, (o.key for o in outcomes))
            chosen: dict[str, Outcome] = {}
            for outcome in outcomes:
                if outcome.key in fresh and outcome.key not in chosen:
                    chosen[outcome.key] = outcome
            if chosen:
                await enqueue_many(conn, [o.event for o in chosen.values()], self.events_exchange)
        return set(chosen)

    async def outbox_pending(self, event_ids: Sequence[str]) -> int:
        """How many of ``event_ids`` the relay has not published yet."""
        if not event_ids:
            return 0
        count: int = await self.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE event_id = ANY($1::text[])", list(event_ids)
        )
        return count
