"""The broker path: blob into the bucket, then an ``ingest_item.v1`` command.

The dataset service registers the item when it consumes the command (and emits
``item.created.v1``); the command id doubles as the idempotency key, so a
command published twice (a retry after a lost confirm) still makes one item.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Any, Self

import aio_pika
import aiormq
from aio_pika.abc import AbstractExchange, AbstractRobustConnection

from common.blobs import BlobStore
from common.contracts import IngestItem
from common.envelope import make_event
from common.s3 import blob_key, object_exists, s3_client
from common.topology import DATASET, Topology
from prelabel_client.errors import ClientError
from prelabel_client.settings import ClientSettings

SOURCE = "/clients/prelabel-cli"

CHECK_BEFORE_PUT_BYTES = 1024 * 1024
"""Blobs this big are looked for (HEAD) before they are put, and not sent again if there.

Below it a HEAD costs about as much as the PUT itself (request signing and a
round trip dominate), and putting identical bytes under a content-addressed
key changes nothing, so small blobs are simply put.
"""


class BrokerIngestor:
    """An S3 client and a confirming AMQP channel, for as long as the context is open."""

    def __init__(
        self,
        *,
        amqp_url: str,
        s3_endpoint_url: str,
        s3_access_key: str,
        s3_secret_key: str,
        s3_bucket: str,
        s3_region: str = "us-east-1",
        topology_prefix: str = "",
        max_connections: int = 32,
        api_key: str | None = None,
    ) -> None:
        self._amqp_url = amqp_url
        self.api_key = api_key
        """The project key every ingest command carries (the dataset service checks it)."""
        self._s3_args = (s3_endpoint_url, s3_access_key, s3_secret_key, s3_region)
        self.bucket = s3_bucket
        self.exchange_name = Topology(topology_prefix).commands_exchange(DATASET)
        self._max_connections = max_connections
        self._stack = contextlib.AsyncExitStack()
        self._s3: Any = None
        self._blobs: BlobStore | None = None
        self._exchange: AbstractExchange | None = None

    @classmethod
    def from_settings(cls, settings: ClientSettings) -> BrokerIngestor:
        """Build from the client settings (``PRELABEL_AMQP_URL``, ``PRELABEL_S3_*`` ...)."""
        return cls(
            amqp_url=settings.amqp_url,
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_access_key=settings.s3_access_key,
            s3_secret_key=settings.s3_secret_key.get_secret_value(),
            s3_bucket=settings.s3_bucket,
            s3_region=settings.s3_region,
            topology_prefix=settings.topology_prefix,
            max_connections=max(settings.concurrency * 2, 10),
            api_key=settings.api_key.get_secret_value(),
        )

    async def __aenter__(self) -> Self:
        try:
            self._s3 = await self._stack.enter_async_context(
                s3_client(*self._s3_args, max_pool_connections=self._max_connections)
            )
            endpoint, access_key, secret_key, region = self._s3_args
            # Puts go through the plain signed-request store (a fraction of the client
            # CPU of a full S3 SDK call per blob); the SDK client does the HEADs.
            self._blobs = BlobStore(
                endpoint,
                self.bucket,
                access_key=access_key,
                secret_key=secret_key,
                region=region,
                max_connections=self._max_connections,
            )
            self._stack.push_async_callback(self._blobs.close)
            connection: AbstractRobustConnection = await aio_pika.connect_robust(self._amqp_url)
            self._stack.push_async_callback(connection.close)
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            try:
                # Passive: the dataset service owns (declares) its commands exchange.
                self._exchange = await channel.get_exchange(self.exchange_name, ensure=True)
            except aiormq.exceptions.ChannelNotFoundEntity as exc:
                raise ClientError(
                    f"exchange {self.exchange_name!r} does not exist: is the dataset service "
                    "running, with the same topology prefix (PRELABEL_TOPOLOGY_PREFIX)?"
                ) from exc
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def put_blob(self, data: bytes, sha256: str) -> str:
        """Store ``data`` under its content key; return the key.

        A blob of ``CHECK_BEFORE_PUT_BYTES`` or more that is there already is not sent again.
        """
        key = blob_key(sha256)
        if len(data) >= CHECK_BEFORE_PUT_BYTES and await object_exists(self._s3, self.bucket, key):
            return key
        if self._blobs is None:
            raise RuntimeError("BrokerIngestor used outside its context")
        await self._blobs.put(key, data, "application/octet-stream")
        return key

    async def publish(self, command: IngestItem, command_id: str) -> None:
        """Publish the command and wait for the broker's confirm.

        Mandatory routing: if no queue takes the command (no dataset service
        consumes it), the broker returns it and this raises instead of
        silently dropping the file.
        """
        if self._exchange is None:
            raise RuntimeError("BrokerIngestor used outside its context")
        event = make_event(command, source=SOURCE, subject=command.dataset_id, event_id=command_id)
        await self._exchange.publish(
            aio_pika.Message(
                event.to_json_bytes(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=event.id,
                type=event.type,
            ),
            routing_key=IngestItem.routing_key,
            mandatory=True,
        )
