"""Broker handlers of the dataset service: ``ingest_item.v1`` from upload clients.

Upload clients send ingest commands by the hundred a second, so their queue is consumed
by a :class:`common.consumer.BatchConsumer`: the commands of a batch are registered
concurrently (each reads its blob, checks it and inserts its item and event in one
statement) and acknowledged together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from common.consumer import HANDLED, BatchConsumer, DeadLetter, Handled, Outcome, Retry
from common.contracts import IngestItem
from common.messaging import PoisonMessageError, commands_exchange, consumer_queue, parse_event
from common.observability import log_context
from common.service import ServiceRuntime
from common.topology import DATASET
from dataset_service.domain import DatasetError, parse_user_metadata
from dataset_service.usecases import ItemStore

log = logging.getLogger(__name__)

HANDLER = "on_ingest_item"
DUPLICATE = Handled("duplicate")


class IngestCommands:
    """The batch handler of ``dataset.on_ingest_item``."""

    def __init__(self, store: ItemStore) -> None:
        self._store = store

    async def __call__(self, bodies: Sequence[bytes]) -> list[Outcome]:
        """One outcome per command: registered (ok or duplicate), dead-lettered, retried."""
        return list(await asyncio.gather(*(self._one(body) for body in bodies)))

    async def _one(self, body: bytes) -> Outcome:
        try:
            event = parse_event(body, IngestItem)
            with log_context(event.id, event.correlationid):
                command = event.data
                _, created = await self._store.ingest(
                    dataset_id=command.dataset_id,
                    s3_key=command.s3_key,
                    name=command.name,
                    directory=command.dir,
                    user_metadata=parse_user_metadata(command.metadata),
                    origin_id=f"ingest:{event.id}",
                )
        except PoisonMessageError as exc:
            return DeadLetter(str(exc))
        except DatasetError as exc:
            return DeadLetter(exc.message)
        except Exception as exc:
            log.warning("ingest command failed; it will be redelivered", exc_info=True)
            return Retry(f"{type(exc).__name__}: {exc}")
        return HANDLED if created else DUPLICATE


def register(runtime: ServiceRuntime, store: ItemStore, *, prefetch: int, batch_max: int) -> str:
    """Consume ingest commands; return the queue's name."""
    queue = consumer_queue(runtime.topology, DATASET, HANDLER, IngestItem.routing_key)
    runtime.batch_consumers.append(
        BatchConsumer(
            amqp_url=runtime.settings.amqp,
            broker=runtime.broker,
            topology=runtime.topology,
            consumer=DATASET,
            handler_name=HANDLER,
            queue=queue,
            exchange=commands_exchange(runtime.topology, DATASET),
            handler=IngestCommands(store),
            metrics=runtime.metrics,
            prefetch=prefetch,
            max_batch=batch_max,
            writers=2,
        )
    )
    return queue.name
