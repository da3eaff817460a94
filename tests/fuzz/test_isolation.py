"""No project reaches another's objects: generated from the five OpenAPI documents, so
a new route is covered without touching this file (issue 13.6).

Bob creates one object of each kind he can (dataset, item, task, annotation); Alice then
calls every operation that names an object (a path parameter, a query parameter or a
JSON or multipart body field called ``<kind>_id`` or ``<kind>_ids``) with Bob's ids,
holding her own key. A path or body reference (a body's at any depth:
``spec.operation.service_id``) must be answered 404 or 422, never 2xx (the
operator's routes under ``/projects``: 401, a project key is not the admin key).
A query parameter that only filters a listing of Alice's own objects may answer 2xx,
but nothing of Bob's: the answer names none of his ids nor his project. Kinds Bob has
no object of get an id nobody has. Bodies are built from the documented schema
(required fields and references only), so a route whose body needs more than that to
pass validation (a pipeline's typed nodes, a PATCH with nothing to change) answers 422
before it looks at the reference; ``test_a_human_annotation_on_another_projects_item``
and the services' own tests cover those references.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from PIL import Image

from prelabel_client.endpoints import SERVICES, Service
from tests.fuzz.documents import openapi_document
from tests.fuzz.stack import FuzzStack

_ID_NAME = re.compile(r"^(?P<kind>[a-z]+)_ids?$")
_ADMIN_PREFIX = "/projects"
"""The operator's routes (projects, keys, any project's budget): the admin key only."""
_METHODS = ("get", "put", "post", "patch", "delete")


@dataclass(frozen=True)
class Operation:
    """One documented operation that names at least one object."""

    service: Service
    method: str
    path: str
    operation: dict[str, Any]
    document: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.service} {self.method.upper()} {self.path}"


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        target: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = target
    return schema


def _body_schema(op: Operation, media_type: str) -> dict[str, Any] | None:
    content = op.operation.get("requestBody", {}).get("content", {})
    if media_type not in content:
        return None
    return _resolve(op.document, content[media_type].get("schema", {}))


def _json_body_schema(op: Operation) -> dict[str, Any] | None:
    return _body_schema(op, "application/json")


def _png() -> bytes:
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, format="PNG")
    return png.getvalue()


def _has_reference(document: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> bool:
    """Whether a body schema names an object in a field, at any depth (refs followed)."""
    schema = _resolve(document, schema)
    if depth > 6:
        return False
    if any(_ID_NAME.match(n) for n in schema.get("properties", {})):
        return True
    children = [
        *schema.get("properties", {}).values(),
        *([schema["items"]] if isinstance(schema.get("items"), dict) else []),
        *schema.get("anyOf", []),
        *schema.get("oneOf", []),
        *schema.get("allOf", []),
    ]
    return any(_has_reference(document, child, depth + 1) for child in children)


def _names_an_object(op: Operation) -> bool:
    params = [p for p in op.operation.get("parameters", []) if p["in"] in ("path", "query")]
    if any(_ID_NAME.match(p["name"]) for p in params):
        return True
    body = _json_body_schema(op) or _body_schema(op, "multipart/form-data")
    return body is not None and _has_reference(op.document, body)


def _references_in_path(op: Operation) -> bool:
    params = op.operation.get("parameters", [])
    return any(p["in"] == "path" and _ID_NAME.match(p["name"]) for p in params)


def _references_only_in_query(op: Operation) -> bool:
    params = op.operation.get("parameters", [])
    in_path = any(p["in"] == "path" and _ID_NAME.match(p["name"]) for p in params)
    body = _json_body_schema(op) or _body_schema(op, "multipart/form-data") or {}
    in_body = _has_reference(op.document, body)
    return not in_path and not in_body


def operations() -> Iterator[Operation]:
    """Every operation of the five documents that names an object."""
    for service in SERVICES:
        document = openapi_document(service)
        for path, item in document["paths"].items():
            for method in _METHODS:
                if method in item:
                    op = Operation(service, method, path, item[method], document)
                    if _names_an_object(op):
                        yield op


OPERATIONS = list(operations())


class ForeignIds:
    """Bob's ids by kind (``dataset``, ``item`` ...), or one nobody has."""

    def __init__(self, ids: dict[str, str]) -> None:
        self.ids = ids

    def of(self, kind: str) -> str:
        return self.ids.get(kind, f"{kind[:4]}_0000000000000000000000000000")


def _value(document: dict[str, Any], schema: dict[str, Any], name: str, ids: ForeignIds) -> Any:
    schema = _resolve(document, schema)
    match = _ID_NAME.match(name)
    if match:
        kind = match["kind"]
        return [ids.of(kind)] if name.endswith("_ids") else ids.of(kind)
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if _resolve(document, s).get("type") != "null"]
            return _value(document, options[0], name, ids) if options else None
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return _body(document, schema, ids)
    if kind == "array":
        item = _value(document, schema.get("items", {}), name.removesuffix("s"), ids)
        return [item] * max(1, schema.get("minItems", 1))
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return False
    return "x" * max(1, schema.get("minLength", 1))


def _body(document: dict[str, Any], schema: dict[str, Any], ids: ForeignIds) -> dict[str, Any]:
    schema = _resolve(document, schema)
    properties = schema.get("properties", {})
    wanted = set(schema.get("required", [])) | {n for n in properties if _ID_NAME.match(n)}
    return {n: _value(document, properties[n], n, ids) for n in properties if n in wanted}


def request_of(op: Operation, ids: ForeignIds) -> dict[str, Any]:
    """The method, URL path, query and JSON body naming Bob's objects."""
    path = op.path
    query: dict[str, Any] = {}
    for param in op.operation.get("parameters", []):
        name = param["name"]
        match = _ID_NAME.match(name)
        if param["in"] == "path":
            value = ids.of(match["kind"]) if match else "x"
            path = path.replace("{" + name + "}", value)
        elif param["in"] == "query" and (match or param.get("required")):
            query[name] = _value(op.document, param.get("schema", {}), name, ids)
    body_schema = _json_body_schema(op)
    request: dict[str, Any] = {"method": op.method.upper(), "url": path, "params": query}
    if body_schema is not None:
        request["json"] = _body(op.document, body_schema, ids)
    form = _body_schema(op, "multipart/form-data")
    if form is not None:
        properties = form.get("properties", {})
        files = {
            n: (f"{n}.png", _png(), "image/png")
            for n, p in properties.items()
            if p.get("format") == "binary"
        }
        data = {n: str(v) for n, v in _body(op.document, form, ids).items() if n not in files}
        request["files"] = files
        request["data"] = data
    return request


@pytest.fixture(scope="module")
def bobs_ids(fuzz_stack: FuzzStack) -> ForeignIds:
    auth = fuzz_stack.bob.auth
    urls = fuzz_stack.urls
    with httpx.Client(headers=auth, timeout=30) as http:
        dataset = http.post(f"{urls['dataset']}/datasets", json={"name": "bob's"})
        dataset.raise_for_status()
        dataset_id = dataset.json()["id"]
        item = http.post(
            f"{urls['dataset']}/datasets/{dataset_id}/items",
            files={"file": ("bob.png", _png(), "image/png")},
        )
        item.raise_for_status()
        item_id = item.json()["id"]
        task = http.post(
            f"{urls['annotation']}/tasks", json={"name": "bob's", "dataset_id": dataset_id}
        )
        task.raise_for_status()
        annotation = http.post(
            f"{urls['annotation']}/annotations",
            json={"item_id": item_id, "type": "classification", "label": "cat"},
        )
        ids = {
            "project": fuzz_stack.bob.id,
            "dataset": dataset_id,
            "item": item_id,
            "task": task.json()["id"],
        }
        if annotation.status_code == 201:
            ids["annotation"] = annotation.json()["id"]
    return ForeignIds(ids)


def test_every_kind_of_reference_is_covered() -> None:
    assert len(OPERATIONS) > 30
    assert {op.service for op in OPERATIONS} == set(SERVICES)


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.label)
def test_another_projects_ids_are_never_accepted(
    fuzz_stack: FuzzStack, bobs_ids: ForeignIds, op: Operation
) -> None:
    request = request_of(op, bobs_ids)
    with httpx.Client(
        base_url=fuzz_stack.urls[op.service], headers=fuzz_stack.alice.auth, timeout=30
    ) as http:
        answer = http.request(**request)
    said = f"{op.label} with Bob's ids {request} answered {answer.status_code}: {answer.text[:300]}"
    if op.path.startswith(_ADMIN_PREFIX):
        assert answer.status_code == 401, said
    elif _references_only_in_query(op) and answer.is_success:
        leaked = [i for i in [*bobs_ids.ids.values(), fuzz_stack.bob.id] if i in answer.text]
        assert leaked == [], said
    elif _references_in_path(op):
        assert answer.status_code in (404, 422), said
    else:
        # A body naming another project's object: not found (or not valid), as in a path.
        assert answer.status_code in (404, 422), said


def test_a_human_annotation_on_another_projects_item_is_not_found(
    fuzz_stack: FuzzStack, bobs_ids: ForeignIds
) -> None:
    with httpx.Client(
        base_url=fuzz_stack.urls["annotation"], headers=fuzz_stack.alice.auth, timeout=30
    ) as http:
        answer = http.post(
            "/annotations",
            json={"item_id": bobs_ids.of("item"), "type": "classification", "label": "cat"},
        )
    assert answer.status_code == 404, answer.text
