"""DQL: Dataloop-style JSON filters over items, parsed once, evaluated two ways.

``parse_filter`` turns a JSON filter into a small typed AST (frozen dataclasses);
``matches`` evaluates it against one item dict in memory (trigger matching);
``dataset_service.dql_sql`` compiles the same AST to a parameterised SQL ``WHERE``
(queries). Both evaluators follow the rules below and are checked against one
shared case table on a real PostgreSQL, so a trigger fires on exactly the items a
query with the same filter returns.

Filter shape::

    {"dir": "/batch1/**",                                  # implicit $eq (a glob here)
     "metadata.system.mimetype": {"$in": ["image/*", "application/pdf"]},
     "$or": [{"metadata.user.score": {"$gte": 0.5, "$lt": 1}},
             {"metadata.user.reviewed": true}]}

- Keys of one object are AND-ed. ``$and`` / ``$or`` take a non-empty list of
  filter objects. A field maps to a value (implicit ``$eq``) or to an object of
  operators (``{"$gte": 1, "$lt": 5}``, AND-ed). ``{}`` matches every item.
- Fields: the item columns ``id``, ``dataset_id``, ``name``, ``filename``,
  ``dir``, ``type`` (``file`` | ``dir``), ``hidden`` (bool), ``created_at``,
  ``updated_at`` (timestamps), and dotted paths into the metadata document,
  ``metadata.<seg>[.<seg>...]`` (for example ``metadata.system.mimetype``,
  ``metadata.user.foo.bar``). Segments match ``[A-Za-z0-9_-]+``. A segment that
  is an integer (``-?[0-9]+``) also indexes into an array, as PostgreSQL's
  ``#>`` does (negative counts from the end).
- Operators: ``$eq``, ``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte``, ``$in``,
  ``$nin``, ``$exists``.

Semantics (identical in memory and in SQL):

- **Types are strict.** A string equals only a string, a number only a number
  (``1 == 1.0``), a boolean only a boolean. Comparing across types is no match,
  never an error. ``$gt``/``$gte``/``$lt``/``$lte`` take a number or a string:
  numbers compare numerically with numbers, strings compare by Unicode code
  point with strings (SQL uses ``COLLATE "C"``, which orders UTF-8 the same
  way). Metadata holds ISO timestamps as strings, so they compare as strings
  (uniformly formatted ISO strings sort chronologically). Arrays and objects in
  the item match no comparison; only ``$exists`` sees them.
- **Globs.** A string operand of ``$eq`` (or the implicit form), ``$ne``,
  ``$in`` or ``$nin`` that contains ``*`` or ``?`` is a glob, matched against
  the whole string value: ``?`` is one character other than ``/``, ``*`` any
  run of characters other than ``/``, ``**`` any run including ``/``. Besides,
  a ``/**`` at the end, ``/**/`` in the middle and ``**/`` at the start may
  match zero directories: ``/batch1/**`` matches ``/batch1``,
  ``/batch1/a.png`` and ``/batch1/x/y``, but not ``/batch10``; ``image/*``
  matches ``image/png``. Inside a glob a backslash makes the next character
  literal (``"a\\*b"`` matches the string ``a*b``). A string without ``*`` or
  ``?`` is compared literally. Matching is case-sensitive.
- **Missing and null.** A metadata path is missing when a key is absent or a
  step lands on a non-container. Item columns have no JSON null: a column whose
  value is ``None`` (or an absent key in the item dict) counts as missing.
  ``$exists: true`` matches a present value, JSON ``null`` included.
  ``{"f": null}`` (``$eq`` null) matches null *or missing*, as in MongoDB.
- **Negations.** ``$ne`` is exactly ``not $eq`` and ``$nin`` is exactly
  ``not $in``: they match items where the field is missing, and items holding a
  value of another type.
- **Column operands are checked at parse time.** ``hidden`` takes booleans
  only (``$eq``/``$ne``/``$in``/``$nin``/``$exists``); ``created_at`` and
  ``updated_at`` take ISO 8601 strings (a timezone-less one is UTC) and compare
  as instants; the text columns take strings. Metadata operands may be any JSON
  scalar.
- **Defaults.** Dataloop hides hidden items and directories unless asked:
  ``with_defaults`` (or ``parse_filter(..., defaults=True)``) adds
  ``hidden == false`` unless the filter mentions ``hidden`` anywhere, and
  ``type == "file"`` unless it mentions ``type`` anywhere.

Items evaluated in memory are mappings with the column keys above, ``metadata``
a mapping, timestamps as ``datetime`` or ISO strings. The evaluator never raises
on item data: a value of the wrong type is no match (and is reported to the
optional ``on_mismatch`` callback).

Invalid filters raise ``DQLError`` with a message and a JSON-pointer-like
``path`` to the offending part (``/$and/1/metadata.user.x/$gt``).

Sort specs (``parse_sort``): ``[{"field": "name", "order": "asc"}, ...]`` or
``{"name": "asc", "metadata.user.score": "desc"}``; orders ``asc``/``desc``
(also ``ascending``/``descending``, ``1``/``-1``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum, StrEnum
from functools import cached_property
from typing import Any, TypeAlias

__all__ = [
    "COLUMNS",
    "DEFAULT_MAX_DEPTH",
    "And",
    "Condition",
    "DQLError",
    "FieldKind",
    "FieldPath",
    "Glob",
    "MismatchCallback",
    "Node",
    "Op",
    "Or",
    "Scalar",
    "SortKey",
    "Value",
    "glob_to_regex",
    "matches",
    "mentions",
    "parse_field",
    "parse_filter",
    "parse_sort",
    "parse_timestamp",
    "with_defaults",
]

DEFAULT_MAX_DEPTH = 10
"""How deeply ``$and``/``$or`` may nest before a filter is rejected."""

Scalar: TypeAlias = str | int | float | bool | None
"""A JSON scalar operand."""


class DQLError(ValueError):
    """An invalid filter or sort spec: ``message`` says what, ``path`` says where.

    ``path`` is a JSON pointer into the filter (``""`` is the whole filter), with
    dotted field names kept as one token: ``/$and/1/metadata.user.x/$gt``.
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{message} (at {path or '/'})")
        self.message = message
        self.path = path


class FieldKind(Enum):
    """How a field's values are typed (decides operand checks and SQL shape)."""

    TEXT = "text"
    BOOL = "bool"
    TIMESTAMP = "timestamp"
    JSON = "json"


COLUMNS: Mapping[str, FieldKind] = {
    "id": FieldKind.TEXT,
    "dataset_id": FieldKind.TEXT,
    "name": FieldKind.TEXT,
    "filename": FieldKind.TEXT,
    "dir": FieldKind.TEXT,
    "type": FieldKind.TEXT,
    "hidden": FieldKind.BOOL,
    "created_at": FieldKind.TIMESTAMP,
    "updated_at": FieldKind.TIMESTAMP,
}
"""Item columns a filter can name directly, with their kinds."""

_SEGMENT_RE = re.compile(r"[A-Za-z0-9_-]+")
_INDEX_RE = re.compile(r"-?[0-9]+")


class Op(StrEnum):
    """A comparison operator."""

    EQ = "$eq"
    NE = "$ne"
    GT = "$gt"
    GTE = "$gte"
    LT = "$lt"
    LTE = "$lte"
    IN = "$in"
    NIN = "$nin"
    EXISTS = "$exists"


_RANGE_OPS = frozenset({Op.GT, Op.GTE, Op.LT, Op.LTE})


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A validated field: an item column (``("dir",)``) or a metadata path.

    ``segments`` always starts with the column name, so a metadata path is
    ``("metadata", "system", "mimetype")``.
    """

    segments: tuple[str, ...]

    @property
    def kind(self) -> FieldKind:
        """The field's kind: a column's own, or JSON for metadata paths."""
        return COLUMNS.get(self.segments[0], FieldKind.JSON)

    @property
    def column(self) -> str:
        """The item column that holds the field (``metadata`` for metadata paths)."""
        return self.segments[0]

    @property
    def json_path(self) -> tuple[str, ...]:
        """The path inside ``metadata`` (empty for columns)."""
        return self.segments[1:]

    @property
    def has_index_segment(self) -> bool:
        """Whether a metadata segment could index an array (``-?[0-9]+``)."""
        return any(_INDEX_RE.fullmatch(s) for s in self.json_path)

    def __str__(self) -> str:
        return ".".join(self.segments)


@dataclass(frozen=True)  # no slots: cached_property needs the instance __dict__
class Glob:
    """A string pattern (see the module docstring for the syntax)."""

    pattern: str

    @cached_property
    def regex(self) -> str:
        """The pattern as an unanchored regex understood alike by Python ``re``
        (with ``DOTALL``) and PostgreSQL's advanced regexes."""
        return glob_to_regex(self.pattern)

    @cached_property
    def compiled(self) -> re.Pattern[str]:
        """``regex`` compiled for ``fullmatch``."""
        return re.compile(self.regex, re.DOTALL)

    def match(self, value: str) -> bool:
        """Whether the whole of ``value`` matches."""
        return self.compiled.fullmatch(value) is not None


Value: TypeAlias = str | int | float | bool | datetime | Glob | None
"""An operand after parsing: a scalar, an instant (timestamp columns) or a glob."""


@dataclass(frozen=True, slots=True)
class Condition:
    """``field <op> value``. ``value`` is a tuple for ``$in``/``$nin`` and a bool
    for ``$exists``."""

    field: FieldPath
    op: Op
    value: Value | tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class And:
    """All children match (no children: everything matches)."""

    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """At least one child matches."""

    children: tuple[Node, ...]


Node: TypeAlias = And | Or | Condition
"""A parsed filter."""


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ``ORDER BY`` key."""

    field: FieldPath
    descending: bool = False


# ---------------------------------------------------------------------------
# Globs


_REGEX_SPECIAL = frozenset("\\.^$*+?()[]{}|")


def _literal(ch: str) -> str:
    # Backslash before a non-alphanumeric character is a literal in both Python
    # and PostgreSQL regexes; before a letter it is not (\d, \m ...), so only
    # metacharacters are escaped.
    return "\\" + ch if ch in _REGEX_SPECIAL else ch


def glob_to_regex(pattern: str) -> str:
    """Translate a glob into an unanchored regex (syntax in the module docstring)."""
    tokens: list[str] = []  # "**", "*", "?" or a one-character literal prefixed by "="
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            tokens.append("=" + pattern[i + 1])
            i += 2
        elif pattern.startswith("**", i):
            tokens.append("**")
            i += 2
        elif ch in "*?":
            tokens.append(ch)
            i += 1
        else:
            tokens.append("=" + ch)
            i += 1

    out: list[str] = []
    i = 0
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        slash_next = i + 1 < n and tokens[i + 1] == "=/"
        if tok == "=/" and i + 1 < n and tokens[i + 1] == "**":
            if i + 2 == n:  # trailing "/**": the directory itself or anything below
                out.append("(?:/.*)?")
                i += 2
                continue
            if i + 2 < n and tokens[i + 2] == "=/":  # "/**/": zero or more directories
                out.append("/(?:.*/)?")
                i += 3
                continue
        if tok == "**" and i == 0 and slash_next:  # leading "**/"
            out.append("(?:.*/)?")
            i += 2
            continue
        if tok == "**":
            out.append(".*")
        elif tok == "*":
            out.append("[^/]*")
        elif tok == "?":
            out.append("[^/]")
        else:
            out.append(_literal(tok[1]))
        i += 1
    return "".join(out)


def _is_glob(s: str) -> bool:
    return "*" in s or "?" in s


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


def parse_field(name: str, path: str = "") -> FieldPath:
    """Validate a field name (a column or ``metadata.<seg>...``)."""
    segments = tuple(name.split("."))
    head = segments[0]
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
        if not _SEGMENT_RE.fullmatch(seg):
            raise DQLError(
                f"field {name!r}: path segment {seg!r} is not made of letters, digits, '_' or '-'",
                path,
            )
    return FieldPath(segments)


class _Parser:
    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth

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
        field = parse_field(name, path)
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
        if op in _RANGE_OPS:
            return Condition(field, op, self.range_operand(field, op, operand, path))
        return Condition(field, op, self.eq_operand(field, op, operand, path))

    def eq_operand(self, field: FieldPath, op: Op, operand: Any, path: str) -> Value:
        kind = field.kind
        if operand is None:
            return None
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
            return Glob(operand) if _is_glob(operand) else operand
        if isinstance(operand, bool):
            return operand
        if isinstance(operand, int | float):
            return self.number(op, operand, path)
        raise DQLError(
            f"{op} needs a string, number, boolean or null, got {_type_name(operand)}", path
        )

    def range_operand(self, field: FieldPath, op: Op, operand: Any, path: str) -> Value:
        kind = field.kind
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


def parse_filter(obj: Any, *, max_depth: int = DEFAULT_MAX_DEPTH, defaults: bool = False) -> Node:
    """Parse a decoded JSON filter into a ``Node``; raise ``DQLError`` if invalid.

    With ``defaults=True`` the result goes through ``with_defaults``.
    """
    node = _Parser(max_depth).filter(obj, "", 0)
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
    for seg in field.json_path:
        if isinstance(current, Mapping):
            current = current.get(seg, _MISSING)
        elif isinstance(current, list) and _INDEX_RE.fullmatch(seg):
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


def _condition(cond: Condition, item: Mapping[str, Any]) -> bool:
    kind = cond.field.kind
    value = _resolve(item, cond.field)
    op = cond.op
    if op is Op.EXISTS:
        return (value is not _MISSING) is cond.value
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
