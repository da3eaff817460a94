"""Predict outcomes: one per request key, claimed and written to the outbox together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from common.envelope import CloudEvent
from common.outbox import claimed_messages, notify_relay, outbox_insert
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
        """Claim each request key and write its outcome event, in one statement (atomic on
        its own: the claims and the outbox rows commit together or not at all).

        A key claimed before (a redelivered or duplicated request) gets no second
        outcome; of several outcomes with one key in ``outcomes`` the first counts.
        Returns the keys recorded by this call.
        """
        chosen: dict[str, Outcome] = {}
        for outcome in outcomes:
            chosen.setdefault(outcome.key, outcome)
        if not chosen:
            return set()
        # One round trip instead of four (begin, claim, outbox, commit); claim_messages and
        # enqueue_many need a transaction around them for that. Their socket writes were a
        # quarter of the worker's CPU samples, though the worker benchmark's rate did not
        # move with this (its Python per request is the bound).
        rows = await self.pool.fetch(
            f"""WITH new AS (
                    SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::bytea[])
                        AS n(key, event_id, routing_key, body)),
                claimed AS (
                    INSERT INTO processed_messages (consumer, message_id)
                    SELECT $1, key FROM new
                    ON CONFLICT DO NOTHING RETURNING message_id),
                event AS ({
                outbox_insert(
                    "new JOIN claimed ON claimed.message_id = new.key",
                    event_id="new.event_id",
                    exchange="$6",
                    routing_key="new.routing_key",
                    body="new.body",
                )
            })
                SELECT message_id, {notify_relay("event")} FROM claimed""",
            PREDICT_CONSUMER,
            list(chosen),
            [o.event.id for o in chosen.values()],
            [o.event.routing_key for o in chosen.values()],
            [o.event.to_json_bytes() for o in chosen.values()],
            self.events_exchange,
        )
        return {r["message_id"] for r in rows}

    async def outbox_pending(self, event_ids: Sequence[str]) -> int:
        """How many of ``event_ids`` the relay has not published yet."""
        if not event_ids:
            return 0
        count: int = await self.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE event_id = ANY($1::text[])", list(event_ids)
        )
        return count
