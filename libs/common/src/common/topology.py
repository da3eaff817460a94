"""Every exchange, routing key and queue name in prelabel, in one place.

Names follow ARCHITECTURE.md: ``<producer>.events`` (topic) and
``<owner>.commands`` exchanges, ``<consumer>.<handler>`` quorum queues with a
``<consumer>.dlx`` dead-letter exchange and ``<queue>.dlq`` queue, and one
``predict.<service_id>`` work queue per model service on the direct exchange
``model_serving.predict``. A ``Topology`` may carry a prefix so tests (or two
deployments on one broker) never see each other's messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DATASET = "dataset"
TRIGGER_ROUTER = "trigger_router"
MODEL_SERVING = "model_serving"
ANNOTATION = "annotation"
BILLING = "billing"

DEFAULT_DELIVERY_LIMIT = 5
DEAD_LETTER_REASON_HEADER = "x-prelabel-dead-letter-reason"
RETRIES_HEADER = "x-prelabel-retries"
"""How many delayed retries a message has had (absent on its first delivery)."""
LAST_ERROR_HEADER = "x-prelabel-last-error"
"""The transient error that sent a message to its latest delayed retry."""

DEFAULT_RETRY_DELAYS: tuple[float, ...] = (1, 2, 5, 10, 20, 30, 60, 60, 60, 60, 60)
"""Seconds before each delayed retry of a transiently failing message: 6 min 8 s in all,
longer than a database, broker or Triton restart, before it is dead-lettered."""


@dataclass(frozen=True)
class Topology:
    """Name factory; ``prefix`` namespaces every name (empty in production)."""

    prefix: str = ""
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    """Delays of the delayed retries of a transient failure (see :meth:`retry_queue`)."""

    def events_exchange(self, producer: str) -> str:
        """Topic exchange a producer publishes its events to."""
        return f"{self.prefix}{producer}.events"

    def commands_exchange(self, owner: str) -> str:
        """Exchange for commands addressed to ``owner``."""
        return f"{self.prefix}{owner}.commands"

    def queue(self, consumer: str, handler: str) -> str:
        """A consumer's quorum queue, one per handler."""
        return f"{self.prefix}{consumer}.{handler}"

    def dead_letter_exchange(self, consumer: str) -> str:
        """Where a consumer's rejected messages go."""
        return f"{self.prefix}{consumer}.dlx"

    @staticmethod
    def dead_letter_queue(queue: str) -> str:
        """The dead-letter queue of ``queue`` (already prefixed)."""
        return f"{queue}.dlq"

    @staticmethod
    def retry_queue(queue: str, delay: float) -> str:
        """Where a message of ``queue`` (already prefixed) waits ``delay`` seconds before
        it goes back to ``queue``: ``<queue>.retry.<ms>ms``."""
        return f"{queue}.retry.{round(delay * 1000)}ms"

    @staticmethod
    def queues_of(queue: str, retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS) -> list[str]:
        """``queue`` (already prefixed) with its dead-letter queue and its retry queues:
        what deleting a consumer's queue must remove."""
        retries = dict.fromkeys(Topology.retry_queue(queue, d) for d in retry_delays)
        return [queue, Topology.dead_letter_queue(queue), *retries]

    @staticmethod
    def retry_queue_arguments(queue: str, delay: float) -> dict[str, Any]:
        """A retry queue: messages expire after ``delay`` and are dead-lettered, at least
        once, through the default exchange back onto ``queue``."""
        return {
            "x-queue-type": "quorum",
            "x-message-ttl": round(delay * 1000),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    @property
    def predict_exchange(self) -> str:
        """Direct exchange of predict requests; the routing key is the service id."""
        return f"{self.prefix}{MODEL_SERVING}.predict"

    def predict_queue(self, service_id: str) -> str:
        """Work queue of one model service."""
        return f"{self.prefix}predict.{service_id}"

    def queue_arguments(self, consumer: str, queue: str) -> dict[str, Any]:
        """Arguments of every consumer queue: quorum, dead-lettering, delivery limit."""
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": self.dead_letter_exchange(consumer),
            "x-dead-letter-routing-key": self.dead_letter_queue(queue),
            "x-delivery-limit": self.delivery_limit,
        }
