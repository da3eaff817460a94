"""Broker handlers of the dataset service: ``ingest_item.v1`` from upload clients.

``on_ingest_item`` is the typed handler of one command. Upload clients send commands by
the hundred a second, so the service consumes their queue through a
:class:`common.consumer.BatchConsumer` (``register``): the blobs of a batch are read and
checked concurrently, their items and events inserted in one statement, and the commands
acknowledged together, each settled on its own. ``subscribe_ingest`` subscribes the same
handler one command per delivery through :func:`common.subscriber.subscribe` (a
FastStream broker: tests on ``TestRabbitBroker``, or an app that embeds the intake).

The intake's queue is bound with ``ingest_item.*`` besides ``ingest_item.v1``, so a
command sent with a version the service does not know is not dropped by the exchange:
it is dead-lettered with "unknown version" as its reason.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

from faststream.rabbit import RabbitBroker

from common.consumer import DUPLICATE, HANDLED, DeadLetter, Handled, Outcome, Retry
from common.contracts import IngestItem
from common.envelope import CloudEvent
from common.messaging import PoisonMessageError, commands_exchange, consumer_queue, parse_event
from common.observability import ServiceMetrics
from common.service import ServiceRuntime
from common.subscriber import Subscription, subscribe
from common.topology import DATASET, Topology
from dataset_service.domain import DatasetError, parse_user_metadata
from dataset_service.usecases.items import IngestRequest, ItemStore, Registered

log = logging.getLogger(__name__)

HANDLER = "on_ingest_item"
ANY_VERSION = "ingest_item.*"
"""The intake's extra binding: every version of the command reaches the queue."""
_KNOWN_TYPE = "prelabel." + IngestItem.routing_key


def parse_command(body: bytes) -> CloudEvent[IngestItem]:
    """The command in ``body``; :class:`PoisonMessageError` with the reason when it is
    not one (another version says "unknown version", JSON nested too deep for the
    parser says so instead of crashing the handler)."""
    try:
        return parse_event(body, IngestItem)
    except RecursionError as exc:
        raise PoisonMessageError("body is nested too deep to parse") from exc
    except PoisonMessageError as exc:
        if str(exc).startswith("unsupported event type 'prelabel.ingest_item."):
            raise PoisonMessageError(
                f"unknown version of ingest_item (this service reads {_KNOWN_TYPE}): {exc}"
            ) from exc
        raise


def ingest_request(event: CloudEvent[IngestItem]) -> IngestRequest:
    """What the command asks to register; ``DatasetError`` for bad metadata."""
    command = event.data
    return IngestRequest(
        dataset_id=command.dataset_id,
        s3_key=command.s3_key,
        name=command.name,
        directory=command.dir,
        user_metadata=parse_user_metadata(command.metadata),
        origin_id=f"ingest:{event.id}",
        api_key=command.api_key,
    )


def _settled(request: IngestRequest, result: Registered | Exception) -> Outcome:
    if isinstance(result, DatasetError):
        return DeadLetter(result.message)
    if isinstance(result, Exception):
        log.warning(
            "ingest command failed; it will be redelivered",
            extra={"origin_id": request.origin_id, "error": repr(result)},
        )
        return Retry(f"{type(result).__name__}: {result}")
    return HANDLED if result[1] else DUPLICATE


async def on_ingest_item(event: CloudEvent[IngestItem], store: ItemStore) -> Handled | DeadLetter:
    """Register the blob of one command (a redelivery is a duplicate); a transient
    failure raises, to be retried."""
    request = ingest_request(event)
    (result,) = await store.ingest_many([request])
    if isinstance(result, DatasetError):
        return DeadLetter(result.message)
    if isinstance(result, Exception):
        raise result
    return HANDLED if result[1] else DUPLICATE


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
                requests.append((index, ingest_request(parse_command(body))))
            except PoisonMessageError as exc:
                outcomes[index] = DeadLetter(str(exc))
            except DatasetError as exc:
                outcomes[index] = DeadLetter(exc.message)
        results = await self._store.ingest_many([request for _, request in requests])
        for (index, request), result in zip(requests, results, strict=True):
            outcomes[index] = _settled(request, result)
        return outcomes


def register(runtime: ServiceRuntime, store: ItemStore, *, prefetch: int, batch_max: int) -> str:
    """Consume ingest commands in batches (one of the service's consumer queues); return
    the queue's name."""
    return runtime.consume_in_batches(
        consumer_queue(runtime.topology, DATASET, HANDLER, IngestItem.routing_key),
        commands_exchange(runtime.topology, DATASET),
        IngestCommands(store),
        handler_name=HANDLER,
        prefetch=prefetch,
        max_batch=batch_max,
        writers=2,
        bindings=(ANY_VERSION,),
    ).queue_name


def subscribe_ingest(
    broker: RabbitBroker,
    topology: Topology,
    metrics: ServiceMetrics,
    store: ItemStore,
    *,
    prefetch: int,
) -> str:
    """Subscribe ``on_ingest_item`` on ``dataset.on_ingest_item`` one command per
    delivery (FastStream); return the queue's name."""
    subscription = Subscription(
        consumer=DATASET,
        handler_name=HANDLER,
        queue=consumer_queue(topology, DATASET, HANDLER, IngestItem.routing_key),
        exchange=commands_exchange(topology, DATASET),
        contracts=(IngestItem,),
    )
    handler = functools.partial(on_ingest_item, store=store)
    return subscribe(
        broker, topology, metrics, subscription, handler, prefetch=prefetch, poison=(DatasetError,)
    )
