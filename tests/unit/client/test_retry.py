"""Which failures the client retries, how long it waits, and that retries reuse one key.

The service is replaced by httpx.MockTransport here only to produce exact status
codes and transport errors for the classification; the integration tests run
against the real service.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import aiormq.exceptions as amqp_errors
import httpx
import pytest
from botocore.exceptions import ClientError as BotoClientError
from botocore.exceptions import EndpointConnectionError

from common.blobs import BlobReadError
from prelabel_client.client import PrelabelClient
from prelabel_client.errors import ApiError
from prelabel_client.plan import LocalFile
from prelabel_client.retry import (
    RetriesExhaustedError,
    RetryPolicy,
    describe,
    is_transient,
    retry_call,
)
from prelabel_client.uploader import Uploader

Handler = Callable[[httpx.Request], httpx.Response]


def _client(handler: Handler) -> PrelabelClient:
    return PrelabelClient("http://dataset", "key", transport=httpx.MockTransport(handler))


async def _error_of(handler: Handler) -> Exception:
    async with _client(handler) as client:
        try:
            await client.get_item("itm_1")
        except Exception as exc:
            return exc
    raise AssertionError("no error raised")


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
async def test_server_errors_and_throttling_are_transient(status: int) -> None:
    exc = await _error_of(lambda _: httpx.Response(status, json={"detail": "busy"}))

    assert isinstance(exc, ApiError)
    assert exc.status_code == status
    assert is_transient(exc)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 415, 422])
async def test_client_errors_are_never_retried(status: int) -> None:
    exc = await _error_of(lambda _: httpx.Response(status, json={"detail": "no"}))

    assert isinstance(exc, ApiError)
    assert not is_transient(exc)


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("server hung up"),
        httpx.ReadError("reset"),
    ],
)
async def test_connection_failures_are_transient(error: httpx.TransportError) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    assert is_transient(await _error_of(fail))


async def test_a_bad_url_scheme_is_not_transient() -> None:
    async with PrelabelClient("ftp://dataset", "key") as client:
        with pytest.raises(httpx.UnsupportedProtocol) as caught:
            await client.get_item("itm_1")
    assert not is_transient(caught.value)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (amqp_errors.DeliveryError(None, None), True),  # type: ignore[arg-type]  # a nack
        # Unroutable (nobody consumes ingest commands); built bare, its real init wants a frame.
        (amqp_errors.PublishError.__new__(amqp_errors.PublishError), False),
        (amqp_errors.ChannelNotFoundEntity("no exchange"), False),
        (amqp_errors.AMQPConnectionError("dropped"), True),
        (ConnectionResetError("reset"), True),
        (EndpointConnectionError(endpoint_url="http://s3"), True),
        (BotoClientError({"Error": {"Code": "SlowDown"}}, "PutObject"), True),
        (
            BotoClientError(
                {"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}},
                "PutObject",
            ),
            True,
        ),
        (
            BotoClientError(
                {"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
                "PutObject",
            ),
            False,
        ),
        (ValueError("bug"), False),
    ],
)
def test_broker_path_failures_are_classified(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"detail": "file is empty"}, "HTTP 400: file is empty"),
        (
            {"detail": {"error": "invalid filter", "message": "unknown operator", "path": "/x"}},
            "HTTP 400: unknown operator (at /x)",
        ),
        (
            {"detail": [{"loc": ["body", "file"], "msg": "Field required"}]},
            "HTTP 400: body.file: Field required",
        ),
    ],
)
async def test_errors_carry_the_servers_message(body: object, message: str) -> None:
    exc = await _error_of(lambda _: httpx.Response(400, json=body))

    assert str(exc) == message
    assert describe(exc) == message


async def test_a_non_json_error_page_is_shown_as_text() -> None:
    exc = await _error_of(lambda _: httpx.Response(502, text="<h1>Bad Gateway</h1>"))

    assert str(exc) == "HTTP 502: <h1>Bad Gateway</h1>"


def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay_s=0.2, max_delay_s=1.0)

    lows = [policy.delay(attempt, rand=0.0) for attempt in range(1, 6)]
    highs = [policy.delay(attempt, rand=1.0) for attempt in range(1, 6)]

    assert lows == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert highs == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0])
    assert 0.1 <= policy.delay(1) <= 0.2


def test_retry_after_is_a_floor_but_bounded() -> None:
    policy = RetryPolicy()

    assert policy.delay(1, ApiError(429, "slow down", retry_after=3.0), rand=0.0) == 3.0
    assert policy.delay(1, ApiError(429, "slow down", retry_after=3600.0), rand=0.0) == 30.0


class _Calls:
    def __init__(self, *results: Exception | str) -> None:
        self.results = list(results)
        self.count = 0

    async def __call__(self) -> str:
        self.count += 1
        result = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        if isinstance(result, Exception):
            raise result
        return result


async def _no_sleep(seconds: float) -> None:
    _no_sleep.waits.append(seconds)  # type: ignore[attr-defined]


async def test_retry_call_retries_transient_failures_until_success() -> None:
    _no_sleep.waits = []  # type: ignore[attr-defined]
    calls = _Calls(ApiError(503, "busy"), httpx.ConnectError("refused"), "ok")

    assert await retry_call(calls, RetryPolicy(), sleep=_no_sleep) == "ok"
    assert calls.count == 3
    assert len(_no_sleep.waits) == 2  # type: ignore[attr-defined]


async def test_retry_call_stops_at_the_first_permanent_error() -> None:
    calls = _Calls(ApiError(415, "unsupported"))

    with pytest.raises(ApiError, match="415"):
        await retry_call(calls, RetryPolicy(), sleep=_no_sleep)
    assert calls.count == 1


async def test_retry_call_gives_up_after_max_attempts() -> None:
    calls = _Calls(ApiError(500, "down"))

    with pytest.raises(RetriesExhaustedError) as caught:
        await retry_call(calls, RetryPolicy(max_attempts=5), sleep=_no_sleep)
    assert calls.count == 5
    assert caught.value.attempts == 5
    assert str(caught.value) == "HTTP 500: down (gave up after 5 attempts)"


def _item_json(request: httpx.Request) -> dict[str, object]:
    return {
        "id": "itm_1",
        "project_id": "p",
        "dataset_id": "ds",
        "name": "a.jpg",
        "filename": "/a.jpg",
        "dir": "/",
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "metadata": {"system": {"sha256": "x"}},
    }


async def test_uploader_retries_with_one_idempotency_key_and_reports_4xx(tmp_path: Path) -> None:
    keys: dict[str, list[str]] = {}

    def service(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/items/query"):
            assert json.loads(request.content)["filter"]["dir"] == "/"
            return httpx.Response(
                200,
                json={
                    "items": [],
                    "total_count": 0,
                    "page": 0,
                    "page_size": 1000,
                    "has_next": False,
                },
            )
        name = "bad.zip" if b"bad.zip" in request.content else "good.jpg"
        keys.setdefault(name, []).append(request.headers["Idempotency-Key"])
        if name == "bad.zip":
            return httpx.Response(
                415, json={"detail": "content type application/zip is not supported"}
            )
        if len(keys[name]) < 3:
            return httpx.Response(503, json={"detail": "busy"})
        return httpx.Response(201, json=_item_json(request))

    good = tmp_path / "good.jpg"
    bad = tmp_path / "bad.zip"
    good.write_bytes(b"good")
    bad.write_bytes(b"PK")
    files = [LocalFile(good, "/", 4), LocalFile(bad, "/", 2)]
    async with _client(service) as client:
        uploader = Uploader(client, retry=RetryPolicy(base_delay_s=0.001, max_delay_s=0.002))
        summary = await uploader.upload(files, "ds")

    assert len(keys["good.jpg"]) == 3
    assert len(set(keys["good.jpg"])) == 1
    assert len(keys["bad.zip"]) == 1
    assert [o.file.path for o in summary.uploaded] == [good]
    assert summary.uploaded[0].item_id == "itm_1"
    assert [(o.file.path, o.reason) for o in summary.failed] == [
        (bad, "HTTP 415: content type application/zip is not supported")
    ]
    assert summary.exit_code == 8  # partial failure


@pytest.mark.parametrize(
    ("status", "transient"),
    [(None, True), (500, True), (503, True), (429, True), (403, False), (400, False)],
)
def test_blob_put_failures_are_retried_only_when_s3_may_answer_differently(
    status: int | None, transient: bool
) -> None:
    assert is_transient(BlobReadError("S3 PUT blobs/x", status)) is transient
