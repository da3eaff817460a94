"""Uploads: one file per multipart request into a dataset."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUploadFile

from common.contracts import ItemSnapshot
from dataset_service.api.dependencies import Project_, Store, settings_of
from dataset_service.domain import DatasetError, TooLargeError, parse_user_metadata

router = APIRouter()


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
                            "description": "User metadata, a JSON object.",
                        },
                        "name": {
                            "type": "string",
                            "description": "Name; defaults to the file's name.",
                        },
                    },
                }
            }
        },
    }
}
"""The upload's multipart body, for the OpenAPI document (the route reads it itself)."""


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
    ``metadata`` and ``name``)."""
    # The form is read here rather than declared as File/Form parameters: FastAPI's
    # per-field machinery costs about as much CPU as storing the file. No dataset check
    # up front either: the insert checks it in the same statement, and a refused
    # upload removes the blob it wrote (see ItemStore.add_item).
    limit = settings_of(request).max_upload_bytes
    async with request.form(max_files=2, max_fields=8) as form:
        file = form.get("file")
        if not isinstance(file, StarletteUploadFile):
            raise DatasetError("the multipart field 'file' with the item's bytes is required")
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise TooLargeError(f"file is larger than the limit of {limit} bytes")
        directory = _form_text(form, "dir") or "/"
        user_metadata = parse_user_metadata(_form_text(form, "metadata"))
        name = _form_text(form, "name") or file.filename or ""
    item, _ = await items.add_item(
        project_id=project,
        dataset_id=dataset_id,
        data=data,
        name=name,
        directory=directory,
        user_metadata=user_metadata,
        origin_id=f"http:{project}:{request_id}" if request_id else f"http:{uuid.uuid4().hex}",
    )
    return item
