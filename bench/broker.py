"""Broker ceiling: confirmed publish and consume-publish-ack relay on quorum queues.

Every prelabel service that consumes a message, publishes its result with
publisher confirms and then acks can go no faster than the bare relay measured
here, and the relay no faster than a raw confirmed publish. Runs against the
real RabbitMQ (``PRELABEL_AMQP_URL``), on durable quorum queues with unique
names that are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)

from bench import results
from bench.settings import BenchSettings

# Run first: the other benchmarks compare against these ceilings.
ORDER = 0
TIMEOUT_S = 120.0

UNIT = "msgs/s"
BODY_SIZE = 1024
WARMUP_MESSAGES = 300
SERIAL_MESSAGES = 500
SERIAL_MAX_S = 5.0
PIPELINED_MESSAGES = 5000
PIPELINED_MAX_S = 10.0
IN_FLIGHT = 256
RELAY_MESSAGES = 5000
RELAY_MAX_S = 20.0
RELAY_PREFETCH = 100
# Pipelining that buys less than this means confirms are being waited on one
# by one somewhere (wrong client settings, a broker fsync per message).
PIPELINING_TARGET_RATIO = 2.0

SERIAL = "broker.publish_confirmed_serial"
PIPELINED = "broker.publish_confirmed_pipelined"
RELAY = "broker.relay"


@asynccontextmanager
async def quorum_queue(channel: AbstractChannel, prefix: str) -> AsyncIterator[AbstractQueue]:
    """A durable quorum queue with a unique name, deleted on exit."""
    queue = await channel.declare_queue(
        f"{prefix}.{uuid.uuid4().hex}", durable=True, arguments={"x-queue-type": "quorum"}
    )
    try:
        yield queue
    finally:
        await queue.delete(if_unused=False, if_empty=False)


def _message(body: bytes) -> aio_pika.Message:
    return aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)


async def _publish_confirmed(exchange: AbstractExchange, routing_key: str, body: bytes) -> None:
    confirmation = await exchange.publish(_message(body), routing_key=routing_key)
    # A nack raises in aiormq; anything but an ack here (e.g. a return) is a loss.
    if not isinstance(confirmation, aiormq.spec.Basic.Ack):
        raise RuntimeError(f"publish to {routing_key!r} not acked: {confirmation!r}")


async def publish_serial(
    exchange: AbstractExchange, routing_key: str, body: bytes, count: int, max_s: float
) -> tuple[int, float]:
    """Publish one message at a time, each awaiting its confirm.

    Stops at ``count`` messages or after ``max_s`` seconds; returns
    (messages confirmed, seconds taken).
    """
    started = time.monotonic()
    deadline = started + max_s
    done = 0
    while done < count and time.monotonic() < deadline:
        await _publish_confirmed(exchange, routing_key, body)
        done += 1
    return done, time.monotonic() - started


async def publish_pipelined(
    exchange: AbstractExchange,
    routing_key: str,
    body: bytes,
    count: int,
    max_s: float,
    in_flight: int = IN_FLIGHT,
) -> tuple[int, float]:
    """Publish with up to ``in_flight`` confirms outstanding (a sliding window).

    Stops starting new publishes at ``count`` messages or after ``max_s``
    seconds, then waits for the outstanding confirms; returns (messages
    confirmed, seconds taken).
    """
    window = asyncio.Semaphore(in_flight)
    done = 0

    async def one() -> None:
        nonlocal done
        try:
            await _publish_confirmed(exchange, routing_key, body)
            done += 1
        finally:
            window.release()

    started = time.monotonic()
    deadline = started + max_s
    async with asyncio.TaskGroup() as group:
        for _ in range(count):
            await window.acquire()
            if time.monotonic() >= deadline:
                window.release()
                break
            group.create_task(one())
    return done, time.monotonic() - started


async def measure_relay(
    connection: AbstractConnection, body: bytes, count: int, prefetch: int, max_s: float
) -> tuple[int, float]:
    """Relay ``count`` messages preloaded in queue A to queue B.

    The consumer on A (prefetch ``prefetch``) publishes each message to B,
    awaits the confirm and then acks the original, like a service handler.
    Timed from the start of consuming until the last message is confirmed in B
    (or ``max_s`` passes); returns (messages relayed, seconds taken).
    """
    publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    consume_channel = await connection.channel(publisher_confirms=False)
    await consume_channel.set_qos(prefetch_count=prefetch)
    try:
        async with (
            quorum_queue(publish_channel, "bench.relay.a") as source,
            quorum_queue(publish_channel, "bench.relay.b") as target,
        ):
            exchange = publish_channel.default_exchange
            loaded, _ = await publish_pipelined(exchange, source.name, body, count, max_s)
            relayed = 0
            finished = asyncio.Event()
            failures: list[BaseException] = []

            async def relay(message: AbstractIncomingMessage) -> None:
                nonlocal relayed
                try:
                    await _publish_confirmed(exchange, target.name, message.body)
                    await message.ack()
                except Exception as error:  # surfaced below, after the consumer stops
                    failures.append(error)
                    finished.set()
                    return
                relayed += 1
                if relayed >= loaded:
                    finished.set()

            consumer_queue = await consume_channel.declare_queue(source.name, passive=True)
            started = time.monotonic()
            tag = await consumer_queue.consume(relay)
            # Bounded: on timeout, report the rate of what was relayed in time.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), timeout=max_s)
            elapsed = time.monotonic() - started
            await consumer_queue.cancel(tag)
            if failures:
                raise RuntimeError(f"relay failed after {relayed} messages") from failures[0]
            await _expect_depth(publish_channel, target.name, relayed, timeout_s=10.0)
            return relayed, elapsed
    finally:
        await consume_channel.close()
        await publish_channel.close()


async def _expect_depth(
    channel: AbstractChannel, queue_name: str, at_least: int, timeout_s: float
) -> None:
    # Confirms already mean "in B"; this checks the broker agrees, with a deadline
    # because a quorum queue's reported depth can trail its confirms briefly.
    deadline = time.monotonic() + timeout_s
    while True:
        queue = await channel.declare_queue(queue_name, passive=True)
        depth = queue.declaration_result.message_count or 0
        if depth >= at_least:
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(f"{queue_name} holds {depth} messages, expected {at_least}")
        await asyncio.sleep(0.05)


def _rate(done: int, seconds: float, what: str) -> float:
    if done == 0 or seconds <= 0:
        raise RuntimeError(f"{what}: nothing confirmed")
    return done / seconds


async def run() -> None:
    """Measure and record the confirmed publish rates and the relay rate."""
    settings = BenchSettings()
    body = os.urandom(BODY_SIZE)
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = channel.default_exchange
        async with quorum_queue(channel, "bench.publish") as queue:
            # Warm up the connection and the queue's Raft log before timing.
            await publish_pipelined(exchange, queue.name, body, WARMUP_MESSAGES, PIPELINED_MAX_S)
            await queue.purge()

            done, seconds = await publish_serial(
                exchange, queue.name, body, SERIAL_MESSAGES, SERIAL_MAX_S
            )
            serial = _rate(done, seconds, SERIAL)
            print(f"{SERIAL}: {done} msgs in {seconds:.2f} s")
            results.record(SERIAL, serial, UNIT)
            await queue.purge()

            done, seconds = await publish_pipelined(
                exchange, queue.name, body, PIPELINED_MESSAGES, PIPELINED_MAX_S
            )
            pipelined = _rate(done, seconds, PIPELINED)
            print(f"{PIPELINED}: {done} msgs in {seconds:.2f} s, {IN_FLIGHT} in flight")
            results.record(
                PIPELINED, pipelined, UNIT, SERIAL, serial, target_ratio=PIPELINING_TARGET_RATIO
            )
        await channel.close()

        done, seconds = await measure_relay(
            connection, body, RELAY_MESSAGES, RELAY_PREFETCH, RELAY_MAX_S
        )
        relay = _rate(done, seconds, RELAY)
        print(f"{RELAY}: {done} msgs in {seconds:.2f} s, prefetch {RELAY_PREFETCH}")
        results.record(RELAY, relay, UNIT, PIPELINED, pipelined)
    finally:
        await connection.close()
