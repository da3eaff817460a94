"""The DQL syntax tree: fields, operators, conditions, globs and sort keys (no parsing,
no evaluation; see the package docstring for the semantics)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from functools import cached_property
from typing import TypeAlias

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

PREDICTION_COLUMN = "prediction"
"""The document key under which a pipeline edge condition sees the prediction."""

PREDICTION_FIELDS: Mapping[str, type] = {
    "prediction.annotations.confidence": float,
    "prediction.annotations.label": str,
    "prediction.annotations.type": str,
    "prediction.count": int,
    "prediction.min_confidence": float,
    "prediction.max_confidence": float,
}
"""Fields of a prediction (pipeline edge conditions only), with the operand type they
take (``float``/``int``: numbers, ``str``: strings and globs; ``null`` always)."""

SEGMENT_RE = re.compile(r"[A-Za-z0-9_-]+")
INDEX_RE = re.compile(r"-?[0-9]+")


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


RANGE_OPS = frozenset({Op.GT, Op.GTE, Op.LT, Op.LTE})


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A validated field: an item column (``("dir",)``) or a metadata path.

    ``segments`` always starts with the column name, so a metadata path is
    ``("metadata", "system", "mimetype")``.
    """

    segments: tuple[str, ...]

    @property
    def kind(self) -> FieldKind:
        """The field's kind: a column's own, or JSON for metadata and prediction paths."""
        return COLUMNS.get(self.segments[0], FieldKind.JSON)

    @property
    def column(self) -> str:
        """The item column that holds the field (``metadata`` for metadata paths,
        ``prediction`` for prediction fields)."""
        return self.segments[0]

    @property
    def json_path(self) -> tuple[str, ...]:
        """The path inside ``metadata`` or ``prediction`` (empty for columns)."""
        return self.segments[1:]

    @property
    def is_prediction(self) -> bool:
        """Whether the field is a ``prediction.*`` field (pipeline edge conditions)."""
        return self.segments[0] == PREDICTION_COLUMN

    @property
    def has_index_segment(self) -> bool:
        """Whether a metadata segment could index an array (``-?[0-9]+``)."""
        return any(INDEX_RE.fullmatch(s) for s in self.json_path)

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


def is_glob(s: str) -> bool:
    return "*" in s or "?" in s
