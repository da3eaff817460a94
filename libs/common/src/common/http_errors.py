"""Hostile HTTP input answered with a clear 4xx, never a 500, in every service.

``install_error_handling(app)`` (called by ``common.service.build_service_app``) adds:

- :class:`NulGuard`: a NUL character (``\\x00``, ``%00``, JSON ``"\\u0000"``) in the path,
  the query string, a JSON body or a form body is refused with 422 before any route
  runs (PostgreSQL text cannot hold it; the answer names where it was);
- handlers turning failures that only hostile input causes into 422: PostgreSQL data
  exceptions (SQLSTATE class 22 and asyncpg's own "invalid input for query argument",
  e.g. an integer past 2^63 or a date PostgreSQL cannot store), arithmetic overflow
  (a date whose UTC conversion leaves year 1..9999), JSON nested past the parser's
  recursion limit;
- :func:`check_parameters`, a dependency of every route: query and path integers must
  fit PostgreSQL's ``bigint`` (|n| < 2^63), and dates and date-times must be ISO 8601
  text, not numbers (pydantic would read ``until=0`` as 1970-01-01, which the documents
  do not promise);
- a 405 answer whose ``Allow`` header names every method the path has (not only the
  first route's);
- :func:`document_errors`: every operation's OpenAPI lists the error answers it can
  give (400, 401, 404, 409, 413, 415, 422, 503) with their body schemas, and API keys
  are declared as an HTTP bearer security scheme instead of a free ``authorization``
  header parameter.

Error bodies: always ``{"detail": ...}``. Request validation (FastAPI's and the NUL
guard's) gives a list of ``{"loc", "msg", "type"}`` entries; every other error a message
string (a few services add fields beside it, or an object with a ``message``).
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import logging
import math
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

import asyncpg
from asyncpg.exceptions import _base as asyncpg_base
from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

NUL_MESSAGE = "NUL characters (\\u0000) are not allowed"
"""What a refused NUL character is told."""

_ESCAPED_NUL = b"\\u0000"


def _nul_locations(value: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    """Where strings (keys included) of a parsed JSON value hold a NUL."""
    if isinstance(value, str):
        if "\x00" in value:
            yield loc
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                yield (*loc, key)
            yield from _nul_locations(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_locations(item, (*loc, index))


def nul_error(loc: tuple[str | int, ...]) -> dict[str, object]:
    """One validation error entry (FastAPI's shape) for a NUL found at ``loc``."""
    return {"type": "string_nul", "loc": list(loc), "msg": NUL_MESSAGE}


def _validation_answer(errors: list[dict[str, object]]) -> JSONResponse:
    return JSONResponse({"detail": errors}, status_code=422)


def _route_path(scope: Scope) -> str:
    """The request's path inside the app: uvicorn serving under a ``root_path``
    (``/api/dataset`` behind the proxy) puts the root path in front of ``scope["path"]``."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


class NulGuard:
    """ASGI middleware refusing NUL characters in path, query, JSON and form bodies (422),
    and ``/metrics`` to requests that came through a proxy (404: see
    :data:`METRICS_DESCRIPTION`).

    Plain ASGI: only JSON and urlencoded form bodies are read ahead (FastAPI reads them
    whole anyway) and handed on unchanged; multipart uploads stream through untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _route_path(scope) == "/metrics" and (
            _header(scope, b"x-forwarded-for") or _header(scope, b"forwarded")
        ):
            # For the scraper on the internal network only: never through the proxy.
            await JSONResponse({"detail": "Not Found"}, status_code=404)(scope, receive, send)
            return
        errors = self._url_errors(scope)
        if errors:
            await _validation_answer(errors)(scope, receive, send)
            return
        content_type = _header(scope, b"content-type").split(";")[0].strip().lower()
        is_json = content_type == "application/json" or content_type.endswith("+json")
        is_form = content_type == "application/x-www-form-urlencoded"
        if not (is_json or is_form):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        errors = _json_errors(body) if is_json else _form_errors(body)
        if errors:
            await _validation_answer(errors)(scope, receive, send)
            return
        replay = iter(messages)

        async def replayed() -> Message:
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        await self.app(scope, replayed, send)

    @staticmethod
    def _url_errors(scope: Scope) -> list[dict[str, object]]:
        errors: list[dict[str, object]] = []
        path: str = scope.get("path", "")
        raw_path: bytes = scope.get("raw_path") or b""
        if "\x00" in path or b"%00" in raw_path or b"\x00" in raw_path:
            errors.append(nul_error(("path",)))
        query: bytes = scope.get("query_string", b"")
        if b"%00" in query or b"\x00" in query:
            text = query.decode("latin-1")
            for name, value in parse_qsl(text, keep_blank_values=True):
                if "\x00" in name or "\x00" in value:
                    errors.append(nul_error(("query", unquote(name).replace("\x00", ""))))
            if not errors:
                errors.append(nul_error(("query",)))
        return errors


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


def _json_errors(body: bytes) -> list[dict[str, object]]:
    if _ESCAPED_NUL not in body:
        # A raw NUL byte is invalid JSON: FastAPI answers 422 json_invalid itself.
        return []
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return []
    return [nul_error(loc) for loc in _nul_locations(parsed, ("body",))]


def _form_errors(body: bytes) -> list[dict[str, object]]:
    if b"%00" not in body and b"\x00" not in body:
        return []
    fields = parse_qsl(body.decode("latin-1"), keep_blank_values=True)
    found = [nul_error(("body", name)) for name, value in fields if "\x00" in name + value]
    return found or [nul_error(("body",))]


def _unstorable(request: Request, exc: Exception) -> JSONResponse:
    log.info(
        "request refused: a value cannot be stored",
        extra={"path": request.url.path, "error": f"{type(exc).__name__}: {exc}"[:300]},
    )
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return JSONResponse(
        {"detail": f"a value in the request is out of range or cannot be stored: {message}"},
        status_code=422,
    )


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    return _unstorable(request, exc)


async def _overflow(request: Request, exc: Exception) -> JSONResponse:
    log.info("request refused: overflow", extra={"path": request.url.path, "error": str(exc)})
    return JSONResponse(
        {"detail": f"a number or date in the request is out of range ({exc})"}, status_code=422
    )


def _json_safe(value: Any) -> Any:
    """``value`` with the floats JSON cannot carry (``inf``, ``nan``) as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


async def _request_validation(_: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own handler echoes each error's input, which fails to serialise (a 500)
    # when the input was a number JSON cannot carry: ``1e400`` parses to ``inf``.
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse({"detail": _json_safe(jsonable_encoder(errors))}, status_code=422)


async def _recursion(request: Request, exc: Exception) -> JSONResponse:
    log.info("request refused: nested too deeply", extra={"path": request.url.path})
    return JSONResponse({"detail": "the request body is nested too deeply"}, status_code=422)


INT64_MAX = 2**63 - 1
"""The largest integer PostgreSQL's ``bigint`` holds (and ``-INT64_MAX - 1`` the least)."""

_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")
_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")


@dataclass(frozen=True, slots=True)
class _Parameter:
    location: str
    name: str
    kind: str


def _kind(annotation: Any) -> str | None:
    """``int``, ``date`` or ``datetime`` for such a parameter (optional or not), else None."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = {_kind(arg) for arg in typing.get_args(annotation) if arg is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    if annotation is bool:
        return None
    if isinstance(annotation, type):
        if issubclass(annotation, dt.datetime):
            return "datetime"
        if issubclass(annotation, dt.date):
            return "date"
        if issubclass(annotation, int):
            return "int"
    return None


_checked: dict[int, tuple[_Parameter, ...]] = {}


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _parameters_of(route: APIRoute) -> tuple[_Parameter, ...]:
    found = _checked.get(id(route))
    if found is None:
        found = tuple(
            dict.fromkeys(
                _Parameter(location, field.alias, kind)
                for dependant in _dependants(route.dependant)
                for location, fields in (
                    ("query", dependant.query_params),
                    ("path", dependant.path_params),
                )
                for field in fields
                if (kind := _kind(field.field_info.annotation)) is not None
            )
        )
        _checked[id(route)] = found
    return found


def _parameter_error(parameter: _Parameter, value: str) -> dict[str, object] | None:
    loc = [parameter.location, parameter.name]
    if parameter.kind == "int":
        if _INTEGER.match(value) and abs(int(value)) > INT64_MAX:
            return {
                "type": "less_than_equal",
                "loc": loc,
                "msg": f"Input should be an integer between {-INT64_MAX - 1} and {INT64_MAX}",
                "input": value,
            }
        return None
    if _NUMBER.match(value):
        expected = "YYYY-MM-DD" if parameter.kind == "date" else "YYYY-MM-DDTHH:MM:SS[+HH:MM]"
        return {
            "type": f"{parameter.kind}_type",
            "loc": loc,
            "msg": f"Input should be an ISO 8601 {parameter.kind.replace('datetime', 'date-time')} ({expected}), not a number",
            "input": value,
        }
    return None


async def check_parameters(request: Request) -> None:
    """Refuse (422) query and path integers PostgreSQL cannot store and numbers given as
    dates: a dependency of every route (``FastAPI(dependencies=...)``)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    errors: list[dict[str, object]] = []
    for parameter in _parameters_of(route):
        if parameter.location == "query":
            values = request.query_params.getlist(parameter.name)
        else:
            raw = request.path_params.get(parameter.name)
            values = [str(raw)] if raw is not None else []
        for value in values:
            error = _parameter_error(parameter, value)
            if error is not None:
                errors.append(error)
    if errors:
        raise RequestValidationError(errors)


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document gives ``path`` (HEAD with GET, OPTIONS never);
    where several templates match (``/executions/rerun`` and ``/executions/{id}``), the
    ones with the fewest parameters, as the document reads."""
    cache: dict[str, re.Pattern[str]] = app.state.__dict__.setdefault("_path_patterns", {})
    by_specificity: dict[int, set[str]] = {}
    for template, item in app.openapi().get("paths", {}).items():
        pattern = cache.get(template)
        if pattern is None:
            parts = re.split(r"(\{[^}]+\})", template)
            pattern = re.compile(
                "^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$"
            )
            cache[template] = pattern
        if pattern.match(path):
            methods = by_specificity.setdefault(template.count("{"), set())
            methods |= {m.upper() for m in item if m in _METHODS}
    if not by_specificity:
        return []
    allowed = by_specificity[min(by_specificity)]
    if "GET" in allowed:
        allowed.add("HEAD")
    return sorted(allowed)


def install_error_handling(app: FastAPI) -> None:
    """Add the NUL guard, the 422 handlers and the documented error answers to ``app``
    (built with ``dependencies=[Depends(check_parameters)]``)."""
    app.add_middleware(NulGuard)
    default_http_error = app.exception_handlers[StarletteHTTPException]

    async def http_error(request: Request, exc: Exception) -> Any:
        if isinstance(exc, StarletteHTTPException) and exc.status_code == 405:
            allowed = _allowed_methods(
                app, request.url.path.removeprefix(request.scope.get("root_path", ""))
            )
            if allowed:
                return JSONResponse(
                    {
                        "detail": f"{request.method} is not allowed here; allowed: {', '.join(allowed)}"
                    },
                    status_code=405,
                    headers={"Allow": ", ".join(allowed)},
                )
        answer = default_http_error(request, exc)
        return await answer if inspect.isawaitable(answer) else answer

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    # Class 22 (data exception) answered by PostgreSQL, and asyncpg's client-side
    # encoding failure ("invalid input for query argument $1 ... out of int64 range").
    app.add_exception_handler(asyncpg.DataError, _data_error)
    app.add_exception_handler(asyncpg_base.DataError, _data_error)
    app.add_exception_handler(OverflowError, _overflow)
    app.add_exception_handler(RecursionError, _recursion)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


BEARER_SCHEME = "bearerAuth"
"""Name of the API key security scheme in every service's OpenAPI document."""

_ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "description": (
        "An error answer: ``detail`` says what is wrong (a message; a few routes answer "
        "an object with a ``message``, or add fields such as ``problems``)."
    ),
    "required": ["detail"],
    "properties": {
        "detail": {
            "title": "Detail",
            "anyOf": [{"type": "string"}, {"type": "object"}, {"type": "array"}],
        }
    },
    "additionalProperties": True,
}

_ERRORS: dict[str, str] = {
    "400": "The request breaks a rule of the service (the message says which).",
    "401": "Missing or unknown API key (`Authorization: Bearer <api key>`).",
    "404": "Not found in the caller's project (another project's ids answer the same).",
    "409": "Conflicts with the current state or with existing data.",
    "413": "The body is larger than the service accepts.",
    "415": "The body's content type is not one the route accepts.",
    "422": (
        "Invalid input: request validation (a list of errors with `loc` and `msg`; NUL "
        "characters anywhere are refused) or a value out of range (a message)."
    ),
    "503": "A dependency (database, broker, the key check) is unavailable; retry later.",
}

METRICS_DESCRIPTION = (
    "Prometheus metrics, for the scraper on the internal network: no API key. Labels name "
    "routes, queues and model service ids (random ids, never names or data) of every "
    "project, so a request that came through a proxy (`X-Forwarded-For` or `Forwarded` "
    "set, as the one-URL proxy and ingress-nginx do) is answered 404."
)

_UNDOCUMENTED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method in _METHODS:
                yield path, operation


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (an OpenAPI document FastAPI generated) with the error answers every
    route can give, the bearer security scheme, and a 422 schema matching every 422
    body the services send."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = _ERROR_SCHEMA
    validation_error = {"$ref": "#/components/schemas/ValidationError"}
    schemas["HTTPValidationError"] = {
        "title": "HTTPValidationError",
        "type": "object",
        "required": ["detail"],
        "properties": {
            "detail": {
                "title": "Detail",
                "anyOf": [
                    {"type": "array", "items": validation_error},
                    {"type": "string"},
                    {"type": "object"},
                ],
            }
        },
        "additionalProperties": True,
    }
    if "ValidationError" not in schemas:
        schemas["ValidationError"] = {
            "title": "ValidationError",
            "type": "object",
            "required": ["loc", "msg", "type"],
            "properties": {
                "loc": {
                    "type": "array",
                    "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                },
                "msg": {"type": "string"},
                "type": {"type": "string"},
            },
        }
    secured = False
    for path, operation in _operations(schema):
        parameters = operation.get("parameters", [])
        auth = [
            p
            for p in parameters
            if p.get("in") == "header" and p["name"].lower() == "authorization"
        ]
        if auth:
            secured = True
            operation["parameters"] = [p for p in parameters if p not in auth]
            if not operation["parameters"]:
                del operation["parameters"]
            operation["security"] = [{BEARER_SCHEME: []}]
        if path in _UNDOCUMENTED_PATHS:
            if path == "/metrics":
                operation["description"] = METRICS_DESCRIPTION
                operation["responses"]["200"] = {
                    "description": "Prometheus text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            if path == "/readyz":
                operation.setdefault("responses", {}).setdefault(
                    "503", {"description": "Not ready: a check failed (the body says which)."}
                )
            continue
        codes = ["400", "404", "409", "422", "503"]
        if auth:
            codes.append("401")
        if "requestBody" in operation:
            codes += ["413", "415"]
        responses = operation.setdefault("responses", {})
        for code in sorted(codes):
            if code == "422":
                ref = "#/components/schemas/HTTPValidationError"
                responses.setdefault(
                    code, {"description": _ERRORS[code], "content": {"application/json": {}}}
                )
                responses[code]["description"] = _ERRORS[code]
                responses[code]["content"] = {"application/json": {"schema": {"$ref": ref}}}
            else:
                responses.setdefault(
                    code,
                    {
                        "description": _ERRORS[code],
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    },
                )
    if secured:
        components.setdefault("securitySchemes", {})[BEARER_SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "A project API key (the dataset service's admin routes: the admin key).",
        }
    return schema
