"""Contracts published or owned by the dataset service."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from common.contracts.base import Contract
from common.topology import DATASET

INLINE_BLOB_CEILING_BYTES = 1024 * 1024
"""The most bytes an inline blob (``ItemCreated.blob_base64``, ``PredictRequest.blob_base64``)
may ever carry: the upper bound of the thresholds that choose it
(``DATASET_INLINE_BLOB_MAX_BYTES``, ``TRIGGER_ROUTER_INLINE_BLOB_MAX_BYTES``), so an item
event stays far below the broker's message size limit."""


def encode_inline_blob(data: bytes) -> str:
    """``data`` as an inline blob field: standard base64 with padding (RFC 4648)."""
    return base64.b64encode(data).decode("ascii")


def inline_blob_size(text: str) -> int:
    """How many bytes the inline blob ``text`` (padded base64) decodes to, without decoding
    it: what a threshold is checked against."""
    padding = 2 if text.endswith("==") else 1 if text.endswith("=") else 0
    return 3 * (len(text) // 4) - padding


def verified_inline_blob(text: str | None, sha256: str | None) -> bytes | None:
    """The bytes of an inline blob when they are the item's content (their SHA-256 is
    ``sha256``, the item's ``metadata.system.sha256``); ``None`` when there is none, it is
    not base64, or it does not match: the reader then reads the blob from S3."""
    if not text or not sha256:
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


class SystemMetadata(BaseModel):
    """``metadata.system`` of an item: what the dataset service recorded of its blob.

    Read with :meth:`of`, which never fails: a field that is missing or of the wrong
    type (an item registered by an older client, a hand-edited row) reads as ``None``.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)

    mimetype: StrictStr | None = None
    """Content type sniffed from the bytes (``image/png`` ...)."""
    size: StrictInt | None = None
    """Blob size in bytes."""
    sha256: StrictStr | None = None
    """Hex SHA-256 of the content."""
    blob_key: StrictStr | None = None
    """S3 key of the content (content-addressed)."""
    width: StrictInt | None = None
    """Image width in pixels (images only)."""
    height: StrictInt | None = None
    """Image height in pixels (images only)."""

    @classmethod
    def of(cls, metadata: Mapping[str, Any] | Any) -> SystemMetadata:
        """The ``system`` part of an item's ``metadata``, field by field."""
        raw = metadata.get("system") if isinstance(metadata, Mapping) else None
        if not isinstance(raw, Mapping):
            return cls()
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            bad = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
            return cls.model_validate({k: v for k, v in raw.items() if k not in bad})


class ItemSnapshot(BaseModel):
    """Everything a trigger filter may look at, as the item was when the event happened."""

    model_config = ConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)

    id: str
    """Item id."""
    project_id: str
    """Owning project."""
    dataset_id: str
    """Dataset the item belongs to."""
    name: str
    """File name without directory."""
    filename: str
    """Full path inside the dataset: ``dir`` + ``/`` + ``name``."""
    dir: str
    """Remote directory, e.g. ``/batch1``."""
    type: Literal["file", "dir"] = "file"
    """``file`` or ``dir``."""
    hidden: bool = False
    """Hidden items are skipped by default filters."""
    created_at: datetime
    """Creation time (UTC)."""
    updated_at: datetime
    """Last change (UTC)."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """``system`` (mimetype, size, width, height, sha256, blob key) and ``user`` metadata."""

    @property
    def system(self) -> SystemMetadata:
        """``metadata.system``, typed."""
        return SystemMetadata.of(self.metadata)

    def as_filter_document(self) -> dict[str, Any]:
        """The item as the DQL in-memory evaluator sees it."""
        return self.model_dump(mode="json")


class ItemCreated(Contract):
    """An item was added to a dataset (upload or ingest)."""

    routing_key = "item.created.v1"
    producer = DATASET

    item: ItemSnapshot
    """The new item."""
    blob_base64: str | None = None
    """The item's blob, base64 (RFC 4648, padded), when it is at most the dataset service's
    ``DATASET_INLINE_BLOB_MAX_BYTES`` (default 65536; 0: never; never above 1048576);
    absent otherwise. A copy for consumers that would read the blob right away (the
    trigger-router passes it on in ``predict_item.v1``, so a worker skips its S3 read):
    ``metadata.system.blob_key`` in S3 stays the source of truth, and a reader uses these
    bytes only when their SHA-256 equals ``metadata.system.sha256``."""


class ItemUpdated(Contract):
    """An item changed other than its user metadata (name, dir, hidden ...)."""

    routing_key = "item.updated.v1"
    producer = DATASET

    item: ItemSnapshot
    """The item after the change."""
    changed: list[str] = Field(default_factory=list)
    """Names of the fields that changed."""


class ItemMetadataUpdated(Contract):
    """An item's user metadata changed."""

    routing_key = "item.metadata_updated.v1"
    producer = DATASET

    item: ItemSnapshot
    """The item after the change."""
    previous_user_metadata: dict[str, Any] = Field(default_factory=dict)
    """``metadata.user`` before the change."""


class ItemDeleted(Contract):
    """An item was deleted."""

    routing_key = "item.deleted.v1"
    producer = DATASET

    item: ItemSnapshot
    """The item as it was before deletion."""


class IngestItem(Contract):
    """Command from an upload client: register a blob that is already in the bucket.

    The command proves its project like an HTTP request: ``api_key`` is a project API
    key, checked against the stored hash, and the dataset must be that project's. A
    command without a valid key, or naming another project's dataset, is dead-lettered
    with the reason. ``s3_key`` must name an object inside the service's bucket.
    """

    routing_key = "ingest_item.v1"
    producer = DATASET
    kind = "command"

    dataset_id: str = Field(min_length=1)
    """Target dataset."""
    s3_key: str = Field(min_length=1)
    """Key of the uploaded blob in the service's bucket: relative, normalised (no empty,
    ``.`` or ``..`` segment, no backslash or control character, NFC), at most 1024
    bytes; the object at most the service's upload limit."""
    name: str = Field(min_length=1)
    """File name (at most 255 characters once directory parts and control characters
    are removed; longer is refused, not cut)."""
    dir: str = "/"
    """Remote directory."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """User metadata: a JSON object at most 32 levels deep and 65536 bytes as compact
    JSON."""
    api_key: str | None = Field(default=None, repr=False)
    """The project API key the command is sent with (required: a command without one is
    dead-lettered)."""
