"""Which failures are worth another try, and how long to wait before it.

Transient: the request may not have reached the service, or the service (or
something in front of it) was briefly unable to answer: connection errors,
timeouts, 5xx, 429, a broker nack, a dropped broker connection. Everything
else, 4xx above all, is the caller's problem and retrying cannot fix it.
Retrying an upload is safe because every file carries one idempotency key
(HTTP) or one command id (broker) for all of its attempts.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aiormq.exceptions as amqp_errors
import botocore.exceptions as boto_errors
import httpx

from common.blobs import BlobReadError
from prelabel_client.errors import ApiError, ServiceUnreachableError

T = TypeVar("T")

# Retry-After from a busy server is honoured, but never waited on for longer than this.
MAX_RETRY_AFTER_S = 30.0

_PERMANENT_TRANSPORT = (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.ProxyError)
_PERMANENT_AMQP = (
    amqp_errors.PublishError,  # returned as unroutable: nobody consumes ingest commands
    amqp_errors.ChannelNotFoundEntity,
    amqp_errors.ChannelAccessRefused,
    amqp_errors.ChannelPreconditionFailed,
    amqp_errors.AuthenticationError,
    amqp_errors.ProbableAuthenticationError,
)
_TRANSIENT_S3_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable"}
)


def is_transient(exc: BaseException) -> bool:
    """Whether another attempt may succeed where this one failed with ``exc``."""
    if isinstance(exc, ServiceUnreachableError):
        return is_transient(exc.cause)
    if isinstance(exc, ApiError):
        return exc.status_code >= 500 or exc.status_code == 429
    if isinstance(exc, httpx.TransportError):
        return not isinstance(exc, _PERMANENT_TRANSPORT)
    if isinstance(exc, _PERMANENT_AMQP):
        return False
    if isinstance(exc, amqp_errors.DeliveryError | amqp_errors.ChannelInvalidStateError):
        return True  # a nack, or a channel being restored after a dropped connection
    if isinstance(exc, BlobReadError):
        return exc.transient
    if isinstance(exc, boto_errors.ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return int(status) >= 500 or error.get("Code") in _TRANSIENT_S3_CODES
    if isinstance(exc, boto_errors.ConnectionError | boto_errors.HTTPClientError):
        return True
    # Sockets (the broker's included: aiormq's connection errors are OSErrors) and timeouts.
    return isinstance(exc, ConnectionError | TimeoutError)


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``max_attempts`` tries, exponential backoff with jitter between them."""

    max_attempts: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def delay(
        self, attempt: int, exc: BaseException | None = None, rand: float | None = None
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        The ceiling doubles per attempt up to ``max_delay_s``; the wait is drawn from
        the upper half of it ("equal jitter"), so many clients failing together do
        not come back in lockstep yet none retries immediately. A server's
        ``Retry-After`` is a floor.
        """
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 1))
        share = random.random() if rand is None else rand
        wait = ceiling / 2 + share * ceiling / 2
        if isinstance(exc, ApiError) and exc.retry_after is not None:
            wait = max(wait, min(exc.retry_after, MAX_RETRY_AFTER_S))
        return wait


class RetriesExhaustedError(Exception):
    """Every attempt failed with a transient error; ``last`` is the final one."""

    def __init__(self, last: BaseException, attempts: int) -> None:
        super().__init__(f"{describe(last)} (gave up after {attempts} attempts)")
        self.last = last
        self.attempts = attempts


async def retry_call(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Await ``call()`` until it succeeds, a permanent error occurs, or attempts run out.

    A permanent error propagates unchanged on the attempt it happens;
    running out of attempts raises ``RetriesExhaustedError``.
    """
    attempt = 1
    while True:
        try:
            return await call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt >= policy.max_attempts:
                raise RetriesExhaustedError(exc, attempt) from exc
            await sleep(policy.delay(attempt, exc))
            attempt += 1


def describe(exc: BaseException) -> str:
    """A one-line reason for a summary table."""
    if isinstance(exc, ApiError | RetriesExhaustedError):
        return str(exc)
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
