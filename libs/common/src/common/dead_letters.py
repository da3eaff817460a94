"""Dead letters of a service's queues, per project: list them, replay them, count them.

Every consumer queue ``<queue>`` has a dead-letter queue ``<queue>.dlq`` holding the
messages of every project. :class:`DeadLetters` reads them with ``basic.get`` without
acknowledging and closes its channel, which gives every message back to its queue in
place; a message is shown to the project its CloudEvents envelope names
(``data.project_id``, or ``data.item.project_id`` for item events; a service may resolve
it otherwise, as the dataset service does for ingest commands from their API key). A
message whose body is not an envelope naming a project is shown to nobody, only counted
(``unattributed``).

A request looks at no more than ``scan_limit`` messages (the service's
``dead_letter_scan_limit`` setting, 1000 by default) over all the queues it reads, and
says so (``truncated``) when it stopped before the end.

Replay republishes the caller's matching messages straight onto the queue they died in
(the default exchange, ``mandatory``, with publisher confirms), without their
dead-lettering headers and with the delayed-retry count reset, and only then
acknowledges the dead-letter copy: a crash in between delivers the message twice, which
the idempotent consumers absorb. Other projects' messages are never touched.

What is shown is redacted: every field named like a secret (``api_key``, ``*_key``,
``*secret*``, ``*password*``, ``*token*``, ``authorization``, ``credentials``), at any
depth, reads ``"***"``; ``s3_key`` and ``routing_key`` name no secret and stay.

``dead_letters_router`` serves ``GET /dead-letters`` and ``POST /dead-letters/replay``
on a service; :mod:`common.service` builds the :class:`DeadLetters` of every service and
keeps ``prelabel_<service>_dead_letters{queue}`` up to date on a timer.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations, which
# name the service's own project dependency (a closure variable).

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, get_args

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aiormq.exceptions import ChannelNotFoundEntity
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, Field, model_validator

from common.channels import OnDemandConnection
from common.observability import metric_name
from common.tasks import raise_if_cancelling, stop_task
from common.topology import (
    DEAD_LETTER_REASON_HEADER,
    LAST_ERROR_HEADER,
    RETRIES_HEADER,
    Topology,
)

log = logging.getLogger(__name__)

DEFAULT_SCAN_LIMIT = 1000
"""Messages one request looks at, at most, over every queue it reads."""
MAX_LIST_LIMIT = 500
"""Most dead letters one listing answers (``limit``); more is refused with 422."""
MAX_REPLAY_IDS = 1000
"""Most ids one replay request names."""
MAX_BODY_SHOWN = 65536
"""A body longer than this (bytes) is not shown (``body_omitted``)."""
COUNT_INTERVAL_SECONDS = 30.0
"""How often the dead-letter gauge is refreshed from the queues' depths."""
REDACTED = "***"
"""What a secret field reads in a listing."""
REPLAYS_HEADER = "x-prelabel-replays"
"""How many times a message was replayed from its dead-letter queue."""

_SECRET_WORDS = ("secret", "password", "passwd", "token", "credential", "authorization")
_NOT_SECRET = frozenset({"s3_key", "routing_key"})
_DROPPED_ON_REPLAY = frozenset({DEAD_LETTER_REASON_HEADER, RETRIES_HEADER, LAST_ERROR_HEADER})


# --------------------------------------------------------------------------- pure parts


def is_secret_name(name: str) -> bool:
    """Whether a field called ``name`` holds a secret: it ends in ``key`` (``api_key``,
    ``s3_secret_key``) or holds ``secret``, ``password``, ``passwd``, ``token``,
    ``credential`` or ``authorization``; ``s3_key`` and ``routing_key`` name none."""
    normalised = name.strip().lower().replace("-", "_")
    if normalised in _NOT_SECRET:
        return False
    return normalised.endswith("key") or any(word in normalised for word in _SECRET_WORDS)


def redact(value: Any) -> Any:
    """``value`` (parsed JSON) with every secret-named field, at any depth, replaced by
    ``"***"`` (a field holding ``null`` stays ``null``)."""
    if isinstance(value, dict):
        return {
            key: (REDACTED if value_ is not None else None)
            if isinstance(key, str) and is_secret_name(key)
            else redact(value_)
            for key, value_ in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def envelope_project(envelope: Mapping[str, Any]) -> str | None:
    """The project an envelope's data names: ``data.project_id``, else
    ``data.item.project_id`` (item events); ``None`` when it names none."""
    data = envelope.get("data")
    if not isinstance(data, dict):
        return None
    project = data.get("project_id")
    if isinstance(project, str) and project:
        return project
    item = data.get("item")
    if isinstance(item, dict):
        project = item.get("project_id")
        if isinstance(project, str) and project:
            return project
    return None


def parse_envelope(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or ``None`` (not JSON, not an object, nested too deep)."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def letter_id(envelope: Mapping[str, Any], message_id: str | None, body: bytes) -> str:
    """A dead letter's id: the envelope's event id, else the AMQP message id, else a
    hash of the body. Stable across listings: replay names letters by it."""
    event_id = envelope.get("id")
    if isinstance(event_id, str) and 0 < len(event_id) <= 200:
        return event_id
    if message_id:
        return message_id
    return "sha256:" + hashlib.sha256(body).hexdigest()[:32]


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value) if value is not None else None


@dataclass(frozen=True)
class Death:
    """What the headers of a dead letter say about how it died."""

    reason: str | None
    deaths: int
    retries: int
    dead_lettered_at: datetime | None


def death_of(headers: Mapping[str, Any] | None, timestamp: datetime | None) -> Death:
    """Reason, death count, delayed retries and time of death from a message's headers:
    ``x-prelabel-dead-letter-reason`` (the service's own dead-lettering, the time from
    the message's timestamp), else RabbitMQ's ``x-death`` (delivery limit, rejected)."""
    headers = headers or {}
    retries = headers.get(RETRIES_HEADER, 0)
    retries = retries if isinstance(retries, int) and not isinstance(retries, bool) else 0
    deaths_header = headers.get("x-death")
    entries = (
        [d for d in deaths_header if isinstance(d, dict)] if isinstance(deaths_header, list) else []
    )
    count = sum(c for d in entries if isinstance(c := d.get("count"), int)) if entries else 0
    when: datetime | None = None
    broker_reason: str | None = None
    if entries:
        first = entries[-1]  # x-death is newest first
        if isinstance(first.get("time"), datetime):
            when = first["time"]
        cause = _text(entries[0].get("reason"))
        if cause is not None:
            broker_reason = f"broker dead-lettered it ({cause}: delivery limit reached or rejected)"
    reason = _text(headers.get(DEAD_LETTER_REASON_HEADER)) or broker_reason
    if when is None:
        when = timestamp
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return Death(
        reason=reason, deaths=max(count, 1), retries=max(retries, 0), dead_lettered_at=when
    )


def replay_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The headers a replayed message is published with: its own, without the broker's
    (``x-death``, ``x-delivery-count`` ...) and the dead-letter reason, with the delayed
    retries reset and ``x-prelabel-replays`` counted up."""
    kept: dict[str, Any] = {}
    for key, value in (headers or {}).items():
        if key in _DROPPED_ON_REPLAY or key == REPLAYS_HEADER:
            continue
        if key.startswith("x-") and not key.startswith("x-prelabel-"):
            continue
        kept[key] = value
    replays = (headers or {}).get(REPLAYS_HEADER, 0)
    replays = replays if isinstance(replays, int) and not isinstance(replays, bool) else 0
    kept[REPLAYS_HEADER] = replays + 1
    return kept


# --------------------------------------------------------------------------- answers


class DeadLetterOut(BaseModel):
    """One dead letter of the caller's project (secrets redacted)."""

    id: str = Field(description="The envelope's event id (what replay names it by).")
    queue: str = Field(description="The queue it died in (its dead letters: <queue>.dlq).")
    reason: str | None = Field(description="Why it was dead-lettered.")
    deaths: int = Field(description="How often it died (RabbitMQ's x-death count, at least 1).")
    retries: int = Field(description="Delayed retries it had before it was dead-lettered.")
    dead_lettered_at: datetime | None = Field(description="When it died, where known.")
    event_type: str | None = Field(description="The envelope's type (prelabel.<key>.vN).")
    subject: str | None = Field(default=None, description="The envelope's subject.")
    correlation_id: str | None = Field(default=None, description="The execution id, if any.")
    replays: int = Field(default=0, description="How often it was replayed before.")
    body: dict[str, Any] | None = Field(
        description="The envelope, every secret-named field redacted ('***')."
    )
    body_omitted: bool = Field(
        default=False, description=f"The body is longer than {MAX_BODY_SHOWN} bytes: not shown."
    )


class DeadLetterPage(BaseModel):
    """The caller's dead letters of one service's queues."""

    letters: list[DeadLetterOut]
    queues: list[str] = Field(description="The queues whose dead letters were read.")
    scanned: int = Field(description="Messages looked at (every project's).")
    scan_limit: int = Field(description="Most messages one request looks at.")
    truncated: bool = Field(
        description="Not every dead letter was looked at (the scan limit or the listing's "
        "limit was reached first): more of the project's may exist."
    )
    unattributed: int = Field(
        description="Messages looked at that name no project (not an envelope, no "
        "project): shown to nobody."
    )


class ReplayIn(BaseModel):
    """Which dead letters to replay: ``ids`` (from a listing), or ``all`` of the
    project's (in ``queue`` when given)."""

    ids: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, min_length=1, max_length=MAX_REPLAY_IDS
    )
    all: bool = False
    queue: str | None = Field(default=None, min_length=1, max_length=300)

    @model_validator(mode="after")
    def _one_choice(self) -> "ReplayIn":
        if (self.ids is None) == (not self.all):
            raise ValueError("give either ids (a non-empty list) or all: true, not both")
        return self


class ReplayOut(BaseModel):
    """What a replay did."""

    replayed: int = Field(description="Messages put back on their queue.")
    not_found: int = Field(description="Ids asked for that were not found (0 with all).")
    not_found_ids: list[str]
    failed: int = Field(description="Messages the broker did not take back (left in place).")
    scanned: int
    scan_limit: int
    truncated: bool = Field(description="The scan limit was reached before the end.")


# --------------------------------------------------------------------------- the queues


MessageProject = Callable[[Mapping[str, Any]], Awaitable[str | None]]
"""Resolves the project of a parsed envelope (``None``: nobody's)."""


async def _envelope_project(envelope: Mapping[str, Any]) -> str | None:
    return envelope_project(envelope)


@dataclass
class _Letter:
    message: AbstractIncomingMessage
    queue: str
    envelope: dict[str, Any] | None
    project: str | None
    id: str


@dataclass
class _Scan:
    letters: list[_Letter] = field(default_factory=list)
    scanned: int = 0
    truncated: bool = False
    unattributed: int = 0


class DeadLetterMetrics:
    """``prelabel_<service>_dead_letters{queue}`` (messages in each dead-letter queue,
    every project's) and ``prelabel_<service>_dead_letters_replayed_total{queue}``.
    One per service per process (the registry is global)."""

    _by_service: dict[str, "DeadLetterMetrics"] = {}

    def __init__(self, service: str) -> None:
        self.waiting = Gauge(
            metric_name(service, "dead_letters"),
            "Messages in each consumer queue's dead-letter queue (every project's).",
            ["queue"],
        )
        self.replayed = Counter(
            metric_name(service, "dead_letters_replayed_total"),
            "Dead letters replayed onto the queue they died in.",
            ["queue"],
        )

    @classmethod
    def of(cls, service: str) -> "DeadLetterMetrics":
        """The service's metrics (created once per process)."""
        if service not in cls._by_service:
            cls._by_service[service] = cls(service)
        return cls._by_service[service]


class DeadLetters:
    """Reads, replays and counts the dead letters of a service's queues.

    Keeps a plain aio-pika connection of its own, opened again on demand when it is
    gone, a fresh channel per queue (``common.channels``: a passive declare of a missing
    queue closes its channel).
    Scans of one process run one at a time: a message another scan holds would be
    missing from this one.
    """

    def __init__(
        self,
        amqp_url: str,
        topology: Topology,
        service: str,
        queues: Sequence[str],
        *,
        scan_limit: int = DEFAULT_SCAN_LIMIT,
        metrics: DeadLetterMetrics | None = None,
        count_interval: float = COUNT_INTERVAL_SECONDS,
        connect_timeout: float = 10.0,
    ) -> None:
        self.amqp_url = amqp_url
        self.topology = topology
        self.service = service
        self.queues = list(queues)
        """The service's consumer queues (model-serving adds its services' queues per
        project)."""
        self.scan_limit = scan_limit
        self.metrics = metrics or DeadLetterMetrics.of(service)
        self.count_interval = count_interval
        self._broker = OnDemandConnection(
            amqp_url,
            f"{service} dead letters",
            unavailable=lambda message: HTTPException(503, message),
            connect_timeout=connect_timeout,
        )
        self._scanning = asyncio.Lock()
        self._counter: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- connection

    def _channel(self) -> contextlib.AbstractAsyncContextManager[AbstractChannel]:
        return self._broker.channel(on_return_raises=True)

    async def start(self) -> None:
        """Refresh the dead-letter gauge now and every ``count_interval`` seconds."""
        self._counter = asyncio.create_task(self._count_forever(), name="dead-letter-gauge")

    async def close(self) -> None:
        """Stop the gauge's timer and close the connection."""
        await stop_task(self._counter)
        await self._broker.close()

    async def _count_forever(self) -> None:
        while True:
            try:
                await self.count()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise_if_cancelling()
                log.warning("could not count dead letters", extra={"error": repr(exc)})
            await asyncio.sleep(self.count_interval)

    # ---------------------------------------------------------------- naming

    def metric_label(self, queue: str) -> str:
        """The gauge's and counter's label: the consumer queue's name; ``predict`` for a
        model service's work queue (its name holds a service id: ``/metrics`` names no
        project's objects)."""
        return queue if queue in self.queues else "predict"

    def resolve(self, queue: str | None, allowed: Sequence[str]) -> list[str]:
        """The queues a request reads: all of ``allowed``, or the one ``queue`` names (its
        full name, without the topology prefix, its handler name, or its dead-letter
        queue's name); a 404 naming the choices when none matches."""
        if queue is None:
            return list(allowed)
        wanted = queue.removesuffix(".dlq")
        for name in allowed:
            if wanted in (name, f"{self.topology.prefix}{wanted}") or name.endswith(f".{wanted}"):
                return [name]
        choices = ", ".join(allowed) or "none"
        raise HTTPException(404, f"no queue {queue!r} among this service's queues ({choices})")

    # ---------------------------------------------------------------- reading

    async def _depths(self, queues: Iterable[str]) -> dict[str, int]:
        """Messages in each existing dead-letter queue of ``queues`` (a queue whose
        dead-letter queue is missing is left out); the gauge is set for consumer queues."""
        depths: dict[str, int] = {}
        for queue in queues:
            # A channel of its own: a passive declare of a missing queue closes it.
            async with self._channel() as channel:
                try:
                    dlq = await channel.declare_queue(
                        self.topology.dead_letter_queue(queue), passive=True
                    )
                except ChannelNotFoundEntity:
                    continue
            depths[queue] = int(dlq.declaration_result.message_count or 0)
            if queue in self.queues:
                self.metrics.waiting.labels(self.metric_label(queue)).set(depths[queue])
        return depths

    async def _scan_queue(
        self,
        channel: AbstractChannel,
        queue: str,
        waiting: int,
        budget: int,
        project_of: MessageProject,
        scan: _Scan,
    ) -> bool:
        """Take (without ack) up to ``budget`` messages of ``queue``'s dead letters into
        ``scan``; True when the queue was read to its end."""
        dlq = await channel.get_queue(self.topology.dead_letter_queue(queue), ensure=False)
        taken = 0
        while taken < budget:
            message = await dlq.get(no_ack=False, fail=False)
            if message is None:
                return True
            taken += 1
            scan.scanned += 1
            envelope = parse_envelope(message.body)
            project = await project_of(envelope) if envelope is not None else None
            if project is None:
                scan.unattributed += 1
            scan.letters.append(
                _Letter(
                    message=message,
                    queue=queue,
                    envelope=envelope,
                    project=project,
                    id=letter_id(envelope or {}, message.message_id, message.body),
                )
            )
        # The budget is spent: the end was reached only if nothing is left.
        return taken >= waiting

    @contextlib.asynccontextmanager
    async def _held(
        self, queues: Iterable[str], project_of: MessageProject
    ) -> AsyncIterator[tuple[AbstractChannel, _Scan]]:
        """Hold up to ``scan_limit`` dead letters of ``queues`` (unacked, oldest first) on
        one channel for the block; closing it gives back every one not acked."""
        async with self._scanning:
            depths = await self._depths(queues)
            async with self._channel() as channel:
                scan = _Scan()
                for queue, waiting in depths.items():
                    budget = self.scan_limit - scan.scanned
                    if budget <= 0:
                        scan.truncated = scan.truncated or waiting > 0
                        continue
                    try:
                        complete = await self._scan_queue(
                            channel, queue, waiting, budget, project_of, scan
                        )
                    except ChannelNotFoundEntity as exc:
                        # Deleted since it was counted (an undeployed model service).
                        raise HTTPException(
                            503, f"queue {queue} changed while it was read; try again"
                        ) from exc
                    scan.truncated = scan.truncated or not complete
                yield channel, scan

    async def list(
        self,
        project_id: str,
        queues: Sequence[str],
        limit: int,
        project_of: MessageProject = _envelope_project,
    ) -> DeadLetterPage:
        """Up to ``limit`` of the project's dead letters of ``queues``, left in place."""
        page: list[DeadLetterOut] = []
        async with self._held(queues, project_of) as (_, scan):
            for letter in scan.letters:
                if letter.project != project_id or letter.envelope is None:
                    continue
                if len(page) >= limit:
                    scan.truncated = True
                    break
                page.append(self._shown(letter))
        return DeadLetterPage(
            letters=page,
            queues=list(queues),
            scanned=scan.scanned,
            scan_limit=self.scan_limit,
            truncated=scan.truncated,
            unattributed=scan.unattributed,
        )

    def _shown(self, letter: _Letter) -> DeadLetterOut:
        message = letter.message
        envelope = letter.envelope or {}
        death = death_of(message.headers, message.timestamp)
        replays = (message.headers or {}).get(REPLAYS_HEADER, 0)
        too_long = len(message.body) > MAX_BODY_SHOWN
        return DeadLetterOut(
            id=letter.id,
            queue=letter.queue,
            reason=death.reason,
            deaths=death.deaths,
            retries=death.retries,
            dead_lettered_at=death.dead_lettered_at,
            event_type=_str_or_none(envelope.get("type")),
            subject=_str_or_none(envelope.get("subject")),
            correlation_id=_str_or_none(envelope.get("correlationid")),
            replays=replays if isinstance(replays, int) and not isinstance(replays, bool) else 0,
            body=None if too_long else redact(envelope),
            body_omitted=too_long,
        )

    # ---------------------------------------------------------------- replay

    async def replay(
        self,
        project_id: str,
        queues: Sequence[str],
        ids: Sequence[str] | None,
        project_of: MessageProject = _envelope_project,
    ) -> ReplayOut:
        """Put the project's dead letters of ``queues`` (those named by ``ids``, or all)
        back on the queue each died in: published with confirms, then the dead-letter
        copy acked. Nobody else's message is touched."""
        wanted = None if ids is None else set(ids)
        found: set[str] = set()
        replayed = failed = 0
        async with self._held(queues, project_of) as (channel, scan):
            for letter in scan.letters:
                if letter.project != project_id or letter.envelope is None:
                    continue
                if wanted is not None and letter.id not in wanted:
                    continue
                found.add(letter.id)
                if await self._republish(channel, letter):
                    replayed += 1
                    self.metrics.replayed.labels(self.metric_label(letter.queue)).inc()
                else:
                    failed += 1
        missing = sorted(wanted - found) if wanted is not None else []
        if replayed:
            log.info(
                "dead letters replayed",
                extra={"project_id": project_id, "replayed": replayed, "failed": failed},
            )
        return ReplayOut(
            replayed=replayed,
            not_found=len(missing),
            not_found_ids=missing,
            failed=failed,
            scanned=scan.scanned,
            scan_limit=self.scan_limit,
            truncated=scan.truncated,
        )

    async def _republish(self, channel: AbstractChannel, letter: _Letter) -> bool:
        message = letter.message
        copy = aio_pika.Message(
            message.body,
            headers=replay_headers(message.headers),
            content_type=message.content_type or "application/json",
            content_encoding=message.content_encoding,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            timestamp=message.timestamp,
            type=message.type,
            app_id=message.app_id,
        )
        try:
            # Straight onto the queue (default exchange): other queues bound to the event's
            # routing key already had it. ``mandatory``: a queue that is gone says so.
            await channel.default_exchange.publish(copy, routing_key=letter.queue, mandatory=True)
        except (aio_pika.exceptions.DeliveryError, aio_pika.exceptions.PublishError) as exc:
            log.warning(
                "replay refused by the broker; the dead letter stays",
                extra={"queue": letter.queue, "error": repr(exc)},
            )
            return False
        await message.ack()
        return True

    # ---------------------------------------------------------------- counting

    async def count(self) -> dict[str, int]:
        """Messages in each consumer queue's dead-letter queue (every project's); sets the
        gauge."""
        return await self._depths(self.queues)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# --------------------------------------------------------------------------- the routes


ProjectQueues = Callable[[Request, str], Awaitable[Sequence[str]]]
"""More queues of the caller's project a service reads dead letters of (model-serving:
its services' work queues)."""
ProjectResolver = Callable[[Request], MessageProject]
"""Gives a request's :data:`MessageProject` (the dataset service: from the ingest
command's API key)."""


def _dependency_of(project: Any) -> Callable[..., Any]:
    """The dependency inside ``Annotated[str, Depends(dep)]``, or ``project`` itself."""
    for extra in get_args(project)[1:]:
        dependency = getattr(extra, "dependency", None)
        if dependency is not None:
            return dependency  # type: ignore[no-any-return]
    if callable(project):
        return project  # type: ignore[no-any-return]
    raise TypeError(f"not a project dependency: {project!r}")


def dead_letters_of(request: Request) -> DeadLetters:
    """The started service's :class:`DeadLetters`."""
    box = getattr(request.app.state.runtime, "dead_letters", None)
    if not isinstance(box, DeadLetters):
        raise HTTPException(503, "dead letters are not available yet")
    return box


def dead_letters_router(
    project: Any,
    *,
    project_of: ProjectResolver | None = None,
    project_queues: ProjectQueues | None = None,
) -> APIRouter:
    """``GET /dead-letters`` and ``POST /dead-letters/replay`` for a service.

    ``project``: the service's project dependency (``Annotated[str, Depends(...)]`` or
    the dependency itself). ``project_of``: how a message's project is found (default:
    the envelope's ``data.project_id`` / ``data.item.project_id``). ``project_queues``:
    queues beyond the service's consumer queues that belong to the caller's project.
    """
    dependency = _dependency_of(project)
    router = APIRouter(tags=["dead-letters"])

    async def scope(
        request: Request, project_id: str, queue: str | None
    ) -> tuple[DeadLetters, list[str], MessageProject]:
        box = dead_letters_of(request)
        allowed = list(box.queues)
        if project_queues is not None:
            allowed += [q for q in await project_queues(request, project_id) if q not in allowed]
        resolver = project_of(request) if project_of is not None else _envelope_project
        return box, box.resolve(queue, allowed), resolver

    @router.get("/dead-letters")
    async def list_dead_letters(
        request: Request,
        project_id: Annotated[str, Depends(dependency)],
        queue: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=300,
                description="One queue: its name or its handler's (on_item_event); "
                "default: every queue of the service.",
            ),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 50,
    ) -> DeadLetterPage:
        """The caller's project's dead letters of this service's queues (left in place),
        oldest first, secrets redacted. Looks at no more than the service's scan limit
        of messages (every project's) and says so in ``truncated``."""
        box, queues, resolver = await scope(request, project_id, queue)
        return await box.list(project_id, queues, limit, resolver)

    @router.post("/dead-letters/replay")
    async def replay_dead_letters(
        request: Request,
        body: ReplayIn,
        project_id: Annotated[str, Depends(dependency)],
    ) -> ReplayOut:
        """Put the caller's project's dead letters (``ids``, or ``all``, of ``queue`` or
        of every queue) back on the queue each died in, delayed retries reset; other
        projects' dead letters are never touched."""
        box, queues, resolver = await scope(request, project_id, body.queue)
        return await box.replay(project_id, queues, body.ids, resolver)

    return router
