"""Uploads: one file per multipart request into a dataset."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.types import Message

from common.contracts import ItemSnapshot
from dataset_service.api.dependencies import Project_, Store, settings_of
from dataset_service.api.schemas import METADATA_LIMITS, NAME_LIMIT
from dataset_service.domain import (
    MAX_METADATA_BYTES,
    MAX_NAME_LENGTH,
    DatasetError,
    TooLargeError,
    parse_user_metadata,
)

router = APIRouter()

FORM_OVERHEAD_BYTES = 4 * MAX_METADATA_BYTES + 64 * 1024
"""What a multipart body may carry besides the file: the text fields (metadata sent
with whitespace or escapes, dir, name) and the part headers and boundaries."""


UPLOAD_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The item's bytes.",
                        },
                        "dir": {
                            "type": "string",
                            "default": "/",
                            "description": "Remote directory, e.g. /batch1.",
                        },
                        "metadata": {
                            "type": "string",
                            "description": f"User metadata, a JSON object. {METADATA_LIMITS}",
                        },
                        "name": {
                            "type": "string",
                            "description": f"Name; defaults to the file's name. {NAME_LIMIT}",
                        },
                    },
                }
            }
        },
    }
}
"""The upload's multipart body, for the OpenAPI document (the route reads it itself)."""


def limited(request: Request, file_limit: int) -> Request:
    """``request`` whose body is refused (:class:`TooLargeError`, 413) as soon as more
    than ``file_limit`` plus :data:`FORM_OVERHEAD_BYTES` arrived, or at once when its
    ``Content-Length`` says so: the multipart parser never spools more than that."""
    limit = file_limit + FORM_OVERHEAD_BYTES
    why = f"the limit is {file_limit} bytes for the file plus {FORM_OVERHEAD_BYTES} for the form"
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise TooLargeError(f"the request body is {length} bytes; {why}")
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise TooLargeError(f"the request body is over {limit} bytes; {why}")
        return message

    return Request(request.scope, receive)


def _form_text(form: FormData, field: str) -> str | None:
    value = form.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DatasetError(f"form field {field!r} must be text, not a file")
    return value


@router.post(
    "/datasets/{dataset_id}/items",
    status_code=201,
    tags=["items"],
    openapi_extra=UPLOAD_FORM,
)
async def upload_item(
    request: Request,
    dataset_id: str,
    project: Project_,
    items: Store,
    request_id: Annotated[
        str | None, Header(alias="Idempotency-Key", description="Retries reuse the item.")
    ] = None,
) -> ItemSnapshot:
    """Upload one file into a dataset (multipart: ``file``, and optionally ``dir``,
    ``metadata`` and ``name``).

    The file may be at most the service's ``max_upload_bytes``; the body is counted as it
    arrives and refused with 413 as soon as it passes that plus room for the text fields.
    An ``Idempotency-Key`` is scoped to the dataset: a retry gets the item of the first
    attempt; the same key with another file, name, dir or metadata answers 409."""
    # The form is read here rather than declared as File/Form parameters: FastAPI's
    # per-field machinery costs about as much CPU as storing the file. No dataset check
    # up front either: the insert checks it in the same statement, and a refused
    # upload removes the blob it wrote (see ItemStore.add_item).
    limit = settings_of(request).max_upload_bytes
    body = limited(request, limit)
    try:
        form = await body.form(max_files=2, max_fields=8)
    except (MultiPartException, HTTPException) as exc:  # Starlette: MultiPartException -> 400
        reason = exc.message if isinstance(exc, MultiPartException) else exc.detail
        raise DatasetError(
            f"the multipart body cannot be read: {reason} (a part's headers, its file "
            f"name included, may be at most 4 KiB; names at most {MAX_NAME_LENGTH} characters)"
        ) from exc
    try:
        file = form.get("file")
        if not isinstance(file, StarletteUploadFile):
            raise DatasetError("the multipart field 'file' with the item's bytes is required")
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise TooLargeError(f"file is larger than the limit of {limit} bytes")
        directory = _form_text(form, "dir") or "/"
        user_metadata = parse_user_metadata(_form_text(form, "metadata"))
        name = _form_text(form, "name") or file.filename or ""
    finally:
        await form.close()
    item, _ = await items.add_item(
        project_id=project,
        dataset_id=dataset_id,
        data=data,
        name=name,
        directory=directory,
        user_metadata=user_metadata,
        origin_id=(
            f"http:{project}:{dataset_id}:{request_id}"
            if request_id
            else f"http:{uuid.uuid4().hex}"
        ),
    )
    return item
