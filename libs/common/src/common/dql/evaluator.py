"""The in-memory DQL evaluator (trigger matching): ``matches(node, item)``, with exactly
the semantics of the SQL evaluator in ``dataset_service.repository.dql_sql`` (one shared case table
checks both)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from common.dql.nodes import (
    INDEX_RE,
    And,
    Condition,
    FieldKind,
    FieldPath,
    Glob,
    Node,
    Op,
    Or,
    Value,
)
from common.dql.parser import parse_timestamp

# ---------------------------------------------------------------------------
# In-memory evaluation

MismatchCallback: TypeAlias = Callable[[Condition, Any], None]
"""Called with the condition and the item's value when their types cannot compare."""

_MISSING: Any = object()


def _resolve(item: Mapping[str, Any], field: FieldPath) -> Any:
    """The field's value, or ``_MISSING``. Mirrors SQL: columns are NULL-or-value,
    metadata paths follow PostgreSQL's ``#>`` (keys into objects, integer
    segments into arrays)."""
    current = item.get(field.column, _MISSING)
    if field.kind is not FieldKind.JSON:
        return _MISSING if current is None else current
    if field.is_prediction:
        return _resolve_through_arrays(current, field.json_path)
    for seg in field.json_path:
        if isinstance(current, Mapping):
            current = current.get(seg, _MISSING)
        elif isinstance(current, list) and INDEX_RE.fullmatch(seg):
            index = int(seg)
            if index < 0:
                index += len(current)
            if not 0 <= index < len(current):
                return _MISSING
            current = current[index]
        else:
            return _MISSING
        if current is _MISSING:
            return _MISSING
    return current


def _resolve_through_arrays(current: Any, path: tuple[str, ...]) -> Any:
    """Mongo's dotted paths (prediction fields): a key looked up on an array is looked
    up on each of its objects, so ``annotations.confidence`` is the list of every
    annotation's confidence; nothing found is ``_MISSING``."""
    values = [current]
    spread = False
    for seg in path:
        found: list[Any] = []
        for value in values:
            if isinstance(value, Mapping):
                if seg in value:
                    found.append(value[seg])
            elif isinstance(value, list):
                spread = True
                found.extend(e[seg] for e in value if isinstance(e, Mapping) and seg in e)
        values = found
    if not values:
        return _MISSING
    return values if spread else values[0]


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class _MismatchError(Exception):
    """The item's value has a type the operand cannot be compared with."""


def _eq(kind: FieldKind, value: Any, operand: Value) -> bool:
    """``value == operand`` under DQL typing; ``value`` may be ``_MISSING``."""
    if operand is None:
        return value is _MISSING or value is None
    if value is _MISSING or value is None:
        return False
    if kind is FieldKind.TIMESTAMP:
        instant = parse_timestamp(value)
        if instant is None:
            raise _MismatchError
        return instant == operand
    if isinstance(operand, Glob):
        if not isinstance(value, str):
            raise _MismatchError
        return operand.match(value)
    if isinstance(operand, bool):
        if not isinstance(value, bool):
            raise _MismatchError
        return value is operand
    if _is_number(operand):
        if not _is_number(value):
            raise _MismatchError
        return bool(value == operand)
    if isinstance(operand, str):
        if not isinstance(value, str):
            raise _MismatchError
        return value == operand
    raise _MismatchError


def _compare(kind: FieldKind, op: Op, value: Any, operand: Value) -> bool:
    if value is _MISSING or value is None:
        return False
    left: Any
    right: Any = operand
    if kind is FieldKind.TIMESTAMP:
        left = parse_timestamp(value)
        if left is None:
            raise _MismatchError
    elif (_is_number(operand) and _is_number(value)) or (
        isinstance(operand, str) and isinstance(value, str)
    ):
        left = value
    else:
        raise _MismatchError
    if op is Op.GT:
        return bool(left > right)
    if op is Op.GTE:
        return bool(left >= right)
    if op is Op.LT:
        return bool(left < right)
    return bool(left <= right)


def _in(kind: FieldKind, value: Any, operands: tuple[Value, ...]) -> bool:
    mismatched = False
    for operand in operands:
        try:
            if _eq(kind, value, operand):
                return True
        except _MismatchError:
            mismatched = True
    if mismatched:
        raise _MismatchError
    return False


_POSITIVE = {Op.NE: Op.EQ, Op.NIN: Op.IN}


def _scalar(kind: FieldKind, op: Op, value: Any, operand: Any) -> bool:
    """One scalar test (``$eq``/``$in``/ranges) of a value that is not an array."""
    if op is Op.EQ:
        return _eq(kind, value, operand)
    if op is Op.IN:
        return _in(kind, value, operand)
    return _compare(kind, op, value, operand)


def _any_element(kind: FieldKind, op: Op, values: list[Any], operand: Any) -> bool:
    """Mongo's array rule: a scalar test on an array holds when it holds for one of its
    elements. Elements of another type are no match; when none matched and some
    could not compare, the mismatch is reported."""
    mismatched = False
    for element in values:
        try:
            if _scalar(kind, op, element, operand):
                return True
        except _MismatchError:
            mismatched = True
    if mismatched:
        raise _MismatchError
    return False


def _condition(cond: Condition, item: Mapping[str, Any]) -> bool:
    kind = cond.field.kind
    value = _resolve(item, cond.field)
    op = cond.op
    if op is Op.EXISTS:
        return (value is not _MISSING) is cond.value
    if isinstance(value, list) and kind is FieldKind.JSON:
        positive = _POSITIVE.get(op, op)
        hit = _any_element(kind, positive, value, cond.value)
        return hit if positive is op else not hit
    if op is Op.EQ:
        return _eq(kind, value, cond.value)  # type: ignore[arg-type]
    if op is Op.IN:
        return _in(kind, value, cond.value)  # type: ignore[arg-type]
    if op is Op.NE:
        return not _eq(kind, value, cond.value)  # type: ignore[arg-type]
    if op is Op.NIN:
        return not _in(kind, value, cond.value)  # type: ignore[arg-type]
    return _compare(kind, op, value, cond.value)  # type: ignore[arg-type]


def matches(
    node: Node, item: Mapping[str, Any], *, on_mismatch: MismatchCallback | None = None
) -> bool:
    """Whether ``item`` satisfies ``node``. Never raises on item data.

    ``on_mismatch`` (optional) hears about each condition whose item value has a
    type the operand cannot compare with (the condition then does not match,
    or matches for ``$ne``/``$nin``), for logging or metrics.
    """
    if isinstance(node, And):
        return all(matches(c, item, on_mismatch=on_mismatch) for c in node.children)
    if isinstance(node, Or):
        return any(matches(c, item, on_mismatch=on_mismatch) for c in node.children)
    try:
        return _condition(node, item)
    except _MismatchError:
        if on_mismatch is not None:
            on_mismatch(node, _resolve(item, node.field))
        return node.op in (Op.NE, Op.NIN)
