"""A :class:`~common.consumer.BatchConsumer` handler for typed events, built from a
function that handles a batch of them.

The per-message subscriber (:mod:`common.subscriber`) settles each message with its
own statements and its own ack. A queue that carries one message per item (a prediction
outcome) pays that once per item; where the handler can write a batch in one statement,
it is consumed in batches through this instead::

    consumer = runtime.consume_in_batches(
        queue, exchange, EventBatches((PredictionCompleted,), count_predictions),
        handler_name="on_prediction_completed", prefetch=256, max_batch=128,
    )

Bodies are parsed into their contract first: bad JSON, an unknown type or invalid fields
are dead-lettered with the reason. The events are then handled together; when that
raises, each is handled alone (:func:`common.batching.together_or_alone`), so only an
event at fault fails: with one of ``poison`` (it can never be handled) it is
dead-lettered with its message, with any other exception it goes to the retry queues.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from common.batching import together_or_alone
from common.consumer import DeadLetter, Outcome, Retry
from common.contracts import Contract
from common.envelope import CloudEvent
from common.errors import ServiceError
from common.messaging import PoisonMessageError, parse_event
from common.observability import log_context

log = logging.getLogger(__name__)

BatchOfEvents = Callable[[Sequence[CloudEvent[Any]]], Awaitable[Sequence[Outcome]]]
"""Handles parsed events together; one outcome per event, in order."""


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ServiceError) else str(exc)


class EventBatches:
    """Bodies in, one outcome each: parsed, then handled by ``handle`` together or alone."""

    def __init__(
        self,
        contracts: tuple[type[Contract], ...],
        handle: BatchOfEvents,
        *,
        poison: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._contracts = contracts
        self._handle = handle
        self._poison = poison

    async def __call__(self, bodies: Sequence[bytes]) -> list[Outcome]:
        outcomes: list[Outcome] = [DeadLetter("not handled")] * len(bodies)
        parsed: list[tuple[int, CloudEvent[Any]]] = []
        for index, body in enumerate(bodies):
            try:
                parsed.append((index, parse_event(body, *self._contracts)))
            except PoisonMessageError as exc:
                outcomes[index] = DeadLetter(str(exc))
        results = await together_or_alone([event for _, event in parsed], self._handle)
        for (index, event), result in zip(parsed, results, strict=True):
            if not isinstance(result, Exception):
                outcomes[index] = result
                continue
            if isinstance(result, self._poison):
                outcomes[index] = DeadLetter(_message(result))
                continue
            with log_context(event.id, event.correlationid):
                log.warning("handling an event failed; retrying later", exc_info=result)
            outcomes[index] = Retry(f"{type(result).__name__}: {_message(result)}")
        return outcomes
