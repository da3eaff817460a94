"""prelabel's client: a typed SDK for the five services, and the ``prelabel`` CLI.

``Prelabel`` (async) and ``SyncPrelabel`` (for scripts) group every service by noun
(``client.datasets``, ``.items``, ``.models``, ``.services``, ``.triggers``,
``.executions``, ``.batches``, ``.annotations``, ``.tasks``, ``.billing``); see
:mod:`prelabel_client.sdk`. Uploading many files, with the dataset client::

    async with PrelabelClient(url, api_key) as client:
        dataset = await client.dataset_by_name("photos", create=True)
        files = collect_files([Path("photos/")], "/batch1")
        summary = await Uploader(client, concurrency=8).upload(files, dataset.id)
"""

from typing import TYPE_CHECKING, Any

from prelabel_client.client import PrelabelClient
from prelabel_client.endpoints import Endpoints
from prelabel_client.errors import (
    ApiError,
    AuthError,
    ClientError,
    ConflictError,
    NotFoundError,
    ServerError,
    ServiceUnreachableError,
    ValidationError,
)
from prelabel_client.models import Dataset, Item, ItemPage
from prelabel_client.plan import LocalFile, collect_files
from prelabel_client.retry import RetryPolicy, is_transient
from prelabel_client.sdk import Prelabel
from prelabel_client.settings import ClientSettings
from prelabel_client.summary import FileOutcome, UploadSummary
from prelabel_client.sync import SyncPrelabel
from prelabel_client.uploader import Uploader, UploadProgress

if TYPE_CHECKING:
    from prelabel_client.broker import BrokerIngestor


def __getattr__(name: str) -> Any:
    # BrokerIngestor pulls in aiobotocore and aio-pika; load them only when asked for.
    if name == "BrokerIngestor":
        from prelabel_client.broker import BrokerIngestor

        return BrokerIngestor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ApiError",
    "AuthError",
    "BrokerIngestor",
    "ClientError",
    "ClientSettings",
    "ConflictError",
    "Dataset",
    "Endpoints",
    "FileOutcome",
    "Item",
    "ItemPage",
    "LocalFile",
    "NotFoundError",
    "Prelabel",
    "PrelabelClient",
    "RetryPolicy",
    "ServerError",
    "ServiceUnreachableError",
    "SyncPrelabel",
    "UploadProgress",
    "UploadSummary",
    "Uploader",
    "ValidationError",
    "collect_files",
    "is_transient",
]
