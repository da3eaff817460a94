"""Predict outcomes: one per request key, claimed and written to the outbox together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from common.envelope import CloudEvent
from common.messaging import enqueue_many
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
        if not keys:
            return set()
        rows = await self.pool.fetch(
            """SELECT message_id FROM processed_messages
               WHERE consumer = $1 AND message_id = ANY($2::text[])""",
            PREDICT_CONSUMER,
            list(keys),
        )
        return {r["message_id"] for r in rows}

    async def record_outcomes(self, outcomes: Sequence[Outcome]) -> set[str]:
        """Claim each request key and write its outcome event, in one transaction.

        A key claimed before (a redelivered or duplicated request) gets no second
        outcome. Returns the keys recorded by this call.
        """
        if not outcomes:
            return set()
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """INSERT INTO processed_messages (consumer, message_id)
                   SELECT $1, k FROM unnest($2::text[]) AS t(k)
                   ON CONFLICT DO NOTHING RETURNING message_id""",
                PREDICT_CONSUMER,
                list(dict.fromkeys(o.key for o in outcomes)),
            )
            fresh = {r["message_id"] for r in rows}
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
