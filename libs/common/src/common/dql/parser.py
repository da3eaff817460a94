"""Parsing DQL: a decoded JSON filter or sort spec into the syntax tree of
:mod:`common.dql.nodes`, with ``DQLError`` saying what is wrong and where."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from common.dql.nodes import (
    COLUMNS,
    DEFAULT_MAX_DEPTH,
    PREDICTION_COLUMN,
    PREDICTION_FIELDS,
    RANGE_OPS,
    SEGMENT_RE,
    And,
    Condition,
    DQLError,
    FieldKind,
    FieldPath,
    Glob,
    Node,
    Op,
    Or,
    SortKey,
    Value,
    is_glob,
)

# ---------------------------------------------------------------------------
# Parsing


def _ptr(path: str, token: str | int) -> str:
    text = str(token).replace("~", "~0").replace("/", "~1")
    return f"{path}/{text}"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 string or ``datetime`` as an aware ``datetime`` (naive means UTC).

    Returns ``None`` for anything else, never raises.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


PREDICTION_ONLY_IN_EDGES = "prediction.* fields are only valid in pipeline edge conditions"
"""The message of the ``DQLError`` for a ``prediction.*`` field where there is no prediction."""


def parse_field(name: str, path: str = "", *, prediction: bool = False) -> FieldPath:
    """Validate a field name (a column, ``metadata.<seg>...``, or with ``prediction=True``
    one of ``PREDICTION_FIELDS``)."""
    segments = tuple(name.split("."))
    head = segments[0]
    if head == PREDICTION_COLUMN:
        if not prediction:
            raise DQLError(f"field {name!r}: {PREDICTION_ONLY_IN_EDGES}", path)
        if name not in PREDICTION_FIELDS:
            known = ", ".join(PREDICTION_FIELDS)
            raise DQLError(f"unknown prediction field {name!r}; expected one of {known}", path)
        return FieldPath(segments)
    if head in COLUMNS:
        if len(segments) > 1:
            raise DQLError(f"field {name!r}: column {head!r} has no sub-fields", path)
        return FieldPath(segments)
    if head != "metadata":
        known = ", ".join([*COLUMNS, "metadata.<path>"])
        raise DQLError(f"unknown field {name!r}; expected one of {known}", path)
    if len(segments) == 1:
        raise DQLError("field 'metadata' needs a path, like 'metadata.user.x'", path)
    for seg in segments[1:]:
        if not SEGMENT_RE.fullmatch(seg):
            raise DQLError(
                f"field {name!r}: path segment {seg!r} is not made of letters, digits, '_' or '-'",
                path,
            )
    return FieldPath(segments)


class _Parser:
    def __init__(self, max_depth: int, *, prediction: bool = False) -> None:
        self.max_depth = max_depth
        self.prediction = prediction

    def filter(self, obj: Any, path: str, depth: int) -> Node:
        if not isinstance(obj, Mapping):
            raise DQLError(f"a filter must be a JSON object, got {_type_name(obj)}", path)
        parts: list[Node] = []
        for key, value in obj.items():
            key_path = _ptr(path, key)
            if not isinstance(key, str):
                raise DQLError("filter keys must be strings", key_path)
            if key in ("$and", "$or"):
                parts.append(self.logical(key, value, key_path, depth + 1))
            elif key.startswith("$"):
                raise DQLError(
                    f"unknown logical operator {key!r}; expected $and or $or, or a field name",
                    key_path,
                )
            else:
                parts.extend(self.field(key, value, key_path))
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def logical(self, key: str, value: Any, path: str, depth: int) -> Node:
        if depth > self.max_depth:
            raise DQLError(f"filter nests $and/$or deeper than {self.max_depth} levels", path)
        if not isinstance(value, list):
            raise DQLError(f"{key} needs a list of filters, got {_type_name(value)}", path)
        if not value:
            raise DQLError(f"{key} needs at least one filter, got an empty list", path)
        children = tuple(self.filter(v, _ptr(path, i), depth) for i, v in enumerate(value))
        return And(children) if key == "$and" else Or(children)

    def field(self, name: str, value: Any, path: str) -> list[Node]:
        field = parse_field(name, path, prediction=self.prediction)
        if isinstance(value, Mapping):
            if not value:
                raise DQLError(f"empty operator object for field {name!r}", path)
            out: list[Node] = []
            for op_name, operand in value.items():
                op_path = _ptr(path, op_name)
                if not isinstance(op_name, str) or not op_name.startswith("$"):
                    raise DQLError(
                        f"expected an operator like $eq or $in, got key {op_name!r} "
                        "(objects are not compared; use dotted paths for nested fields)",
                        op_path,
                    )
                try:
                    op = Op(op_name)
                except ValueError:
                    ops = ", ".join(o.value for o in Op)
                    raise DQLError(
                        f"unknown operator {op_name!r}; expected one of {ops}", op_path
                    ) from None
                out.append(self.condition(field, op, operand, op_path))
            return out
        return [self.condition(field, Op.EQ, value, path)]

    def condition(self, field: FieldPath, op: Op, operand: Any, path: str) -> Condition:
        if op is Op.EXISTS:
            if not isinstance(operand, bool):
                raise DQLError(f"$exists needs true or false, got {_type_name(operand)}", path)
            return Condition(field, op, operand)
        if op in (Op.IN, Op.NIN):
            if not isinstance(operand, list):
                raise DQLError(f"{op} needs a list, got {_type_name(operand)}", path)
            items = tuple(
                self.eq_operand(field, op, v, _ptr(path, i)) for i, v in enumerate(operand)
            )
            return Condition(field, op, items)
        if op in RANGE_OPS:
            return Condition(field, op, self.range_operand(field, op, operand, path))
        return Condition(field, op, self.eq_operand(field, op, operand, path))

    def eq_operand(self, field: FieldPath, op: Op, operand: Any, path: str) -> Value:
        kind = field.kind
        if operand is None:
            return None
        if field.is_prediction:
            self.prediction_operand(field, op, operand, path)
        if kind is FieldKind.BOOL:
            if not isinstance(operand, bool):
                raise DQLError(
                    f"{op} on {field} needs true, false or null, got {_type_name(operand)}", path
                )
            return operand
        if kind is FieldKind.TIMESTAMP:
            return self.timestamp_operand(field, op, operand, path)
        if kind is FieldKind.TEXT and not isinstance(operand, str):
            raise DQLError(
                f"{op} on {field} needs a string or null, got {_type_name(operand)}", path
            )
        if isinstance(operand, str):
            operand = self.string(op, operand, path)
            return Glob(operand) if is_glob(operand) else operand
        if isinstance(operand, bool):
            return operand
        if isinstance(operand, int | float):
            return self.number(op, operand, path)
        raise DQLError(
            f"{op} needs a string, number, boolean or null, got {_type_name(operand)}", path
        )

    def range_operand(self, field: FieldPath, op: Op, operand: Any, path: str) -> Value:
        kind = field.kind
        if field.is_prediction:
            self.prediction_operand(field, op, operand, path)
        if kind is FieldKind.BOOL:
            raise DQLError(f"{op} does not apply to boolean field {field}", path)
        if kind is FieldKind.TIMESTAMP:
            return self.timestamp_operand(field, op, operand, path)
        if isinstance(operand, str):
            return self.string(op, operand, path)
        if (
            kind is FieldKind.JSON
            and isinstance(operand, int | float)
            and not isinstance(operand, bool)
        ):
            return self.number(op, operand, path)
        wanted = "a string" if kind is FieldKind.TEXT else "a number or a string"
        raise DQLError(f"{op} on {field} needs {wanted}, got {_type_name(operand)}", path)

    @staticmethod
    def prediction_operand(field: FieldPath, op: Op, operand: Any, path: str) -> None:
        wanted = PREDICTION_FIELDS[str(field)]
        is_number = isinstance(operand, int | float) and not isinstance(operand, bool)
        if wanted is str and not isinstance(operand, str):
            raise DQLError(f"{op} on {field} needs a string, got {_type_name(operand)}", path)
        if wanted is not str and not is_number:
            raise DQLError(f"{op} on {field} needs a number, got {_type_name(operand)}", path)

    @staticmethod
    def timestamp_operand(field: FieldPath, op: Op, operand: Any, path: str) -> datetime:
        parsed = parse_timestamp(operand) if isinstance(operand, str) else None
        if parsed is None:
            raise DQLError(
                f"{op} on {field} needs an ISO 8601 timestamp string, got {operand!r}", path
            )
        return parsed

    @staticmethod
    def string(op: Op, operand: str, path: str) -> str:
        # PostgreSQL text and jsonb hold neither NUL nor lone surrogates; refusing
        # them here keeps the SQL evaluator from failing where memory would not.
        if "\x00" in operand:
            raise DQLError(f"{op} operand contains a NUL character", path)
        try:
            operand.encode("utf-8")
        except UnicodeEncodeError:
            raise DQLError(f"{op} operand is not valid Unicode (lone surrogate)", path) from None
        return operand

    @staticmethod
    def number(op: Op, operand: float, path: str) -> float:
        if isinstance(operand, float) and not math.isfinite(operand):
            raise DQLError(f"{op} needs a finite number, got {operand!r}", path)
        return operand


def parse_filter(
    obj: Any,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    defaults: bool = False,
    prediction: bool = False,
) -> Node:
    """Parse a decoded JSON filter into a ``Node``; raise ``DQLError`` if invalid.

    With ``defaults=True`` the result goes through ``with_defaults``. With
    ``prediction=True`` (pipeline edge conditions) the ``prediction.*`` fields are
    allowed; elsewhere they are refused with ``PREDICTION_ONLY_IN_EDGES``.
    """
    node = _Parser(max_depth, prediction=prediction).filter(obj, "", 0)
    return with_defaults(node) if defaults else node


def _walk(node: Node) -> Iterator[Condition]:
    if isinstance(node, Condition):
        yield node
    else:
        for child in node.children:
            yield from _walk(child)


def mentions(node: Node, field: str) -> bool:
    """Whether any condition of ``node`` is on ``field`` (dotted name)."""
    return any(str(c.field) == field for c in _walk(node))


def uses_prediction(node: Node) -> bool:
    """Whether any condition of ``node`` is on a ``prediction.*`` field."""
    return any(c.field.is_prediction for c in _walk(node))


def with_defaults(node: Node) -> Node:
    """Add ``hidden == false`` and ``type == "file"`` unless ``node`` mentions them."""
    extra: list[Node] = []
    if not mentions(node, "hidden"):
        extra.append(Condition(FieldPath(("hidden",)), Op.EQ, False))
    if not mentions(node, "type"):
        extra.append(Condition(FieldPath(("type",)), Op.EQ, "file"))
    if not extra:
        return node
    if isinstance(node, And):
        return And((*node.children, *extra))
    return And((node, *extra))


_ORDERS = {"asc": False, "ascending": False, 1: False, "desc": True, "descending": True, -1: True}


def _order(value: Any, path: str) -> bool:
    key = value.lower() if isinstance(value, str) else value
    if isinstance(key, bool) or not isinstance(key, str | int) or key not in _ORDERS:
        raise DQLError(f"sort order must be 'asc' or 'desc', got {value!r}", path)
    return _ORDERS[key]


def parse_sort(spec: Any, path: str = "") -> tuple[SortKey, ...]:
    """Parse a sort spec (list of ``{"field", "order"}`` or ``{field: order}``).

    ``None`` or an empty spec gives no keys (callers still order by id).
    """
    if spec is None:
        return ()
    keys: list[SortKey] = []
    if isinstance(spec, Mapping):
        for name, order in spec.items():
            key_path = _ptr(path, name)
            if not isinstance(name, str):
                raise DQLError("sort field names must be strings", key_path)
            keys.append(SortKey(parse_field(name, key_path), _order(order, key_path)))
        return tuple(keys)
    if not isinstance(spec, list):
        raise DQLError(f"sort must be a list or an object, got {_type_name(spec)}", path)
    for i, entry in enumerate(spec):
        entry_path = _ptr(path, i)
        if not isinstance(entry, Mapping):
            raise DQLError(
                f'sort entries must be objects like {{"field": "name", "order": "asc"}}, '
                f"got {_type_name(entry)}",
                entry_path,
            )
        unknown = set(entry) - {"field", "order"}
        if unknown:
            raise DQLError(f"unknown sort keys {sorted(map(str, unknown))}", entry_path)
        name = entry.get("field")
        if not isinstance(name, str):
            raise DQLError("sort entry needs a 'field' string", _ptr(entry_path, "field"))
        field = parse_field(name, _ptr(entry_path, "field"))
        descending = _order(entry.get("order", "asc"), _ptr(entry_path, "order"))
        keys.append(SortKey(field, descending))
    return tuple(keys)
