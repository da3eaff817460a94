"""Broker handlers of the dataset service: ``ingest_item.v1`` from upload clients.

Upload clients send ingest commands by the hundred a second, so their queue is consumed
by a :class:`common.consumer.BatchConsumer`: the blobs of a batch are read and checked
concurrently, their items and events inserted in one statement, and the commands
acknowledged together.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from common.consumer import DUPLICATE, HANDLED, DeadLetter, Outcome, Retry
from common.contracts import IngestItem
from common.messaging import PoisonMessageError, commands_exchange, consumer_queue, parse_event
from common.service import ServiceRuntime
from common.topology import DATASET
from dataset_service.domain import DatasetError, parse_user_metadata
from dataset_service.usecases.items import IngestRequest, ItemStore

log = logging.getLogger(__name__)

HANDLER = "on_ingest_item"


class IngestCommands:
    """The batch handler of ``dataset.on_ingest_item``."""

    def __init__(self, store: ItemStore) -> None:
        self._store = store

    async def __call__(self, bodies: Sequence[bytes]) -> list[Outcome]:
        """One outcome per command: registered (ok or duplicate), dead-lettered, retried."""
        outcomes: list[Outcome] = [HANDLED] * len(bodies)
        requests: list[tuple[int, IngestRequest]] = []
        for index, body in enumerate(bodies):
            try:
                event = parse_event(body, IngestItem)
                command = event.data
                requests.append(
                    (
                        index,
                        IngestRequest(
                            dataset_id=command.dataset_id,
                            s3_key=command.s3_key,
                            name=command.name,
                            directory=command.dir,
                            user_metadata=parse_user_metadata(command.metadata),
                            origin_id=f"ingest:{event.id}",
                        ),
                    )
                )
            except PoisonMessageError as exc:
                outcomes[index] = DeadLetter(str(exc))
            except DatasetError as exc:
                outcomes[index] = DeadLetter(exc.message)
        results = await self._store.ingest_many([request for _, request in requests])
        for (index, request), result in zip(requests, results, strict=True):
            if isinstance(result, DatasetError):
                outcomes[index] = DeadLetter(result.message)
            elif isinstance(result, Exception):
                log.warning(
                    "ingest command failed; it will be redelivered",
                    extra={"origin_id": request.origin_id, "error": repr(result)},
                )
                outcomes[index] = Retry(f"{type(result).__name__}: {result}")
            else:
                outcomes[index] = HANDLED if result[1] else DUPLICATE
        return outcomes


def register(runtime: ServiceRuntime, store: ItemStore, *, prefetch: int, batch_max: int) -> str:
    """Consume ingest commands; return the queue's name."""
    return runtime.consume_in_batches(
        consumer_queue(runtime.topology, DATASET, HANDLER, IngestItem.routing_key),
        commands_exchange(runtime.topology, DATASET),
        IngestCommands(store),
        handler_name=HANDLER,
        prefetch=prefetch,
        max_batch=batch_max,
        writers=2,
    )
