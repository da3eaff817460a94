"""Compile a parsed DQL filter (``common.dql``) to a PostgreSQL ``WHERE`` clause.

The SQL has exactly the semantics of ``common.dql.matches`` (the shared case
table runs through both against a real PostgreSQL). Values only ever travel as
asyncpg parameters (``$n``); the only text put into the SQL is column names from
a fixed list and metadata path segments already checked against
``[A-Za-z0-9_-]+``.

Expected row layout (table ``items``)::

    id text, dataset_id text, name text, filename text, dir text, type text,
    hidden boolean, created_at timestamptz, updated_at timestamptz,
    metadata jsonb NOT NULL

How it maps, and which indexes each shape can use:

- Item columns compare as columns: ``dir = $1``, ``hidden = ANY($2::boolean[])``
  (btree indexes). Text ranges and sorting use ``COLLATE "C"`` so strings order
  by code point exactly as Python does; an index meant to serve them needs the
  same collation, e.g. ``(dataset_id, name COLLATE "C")``. Globs are anchored
  regexes (``dir COLLATE "C" ~ '^(?:/batch1(?:/.*)?)$'``), whose literal prefix PostgreSQL
  turns into an index range on a ``COLLATE "C"`` or ``text_pattern_ops`` index.
- Metadata equality and ``$in`` use containment, ``metadata @> '{"system":
  {"mimetype": "image/png"}}'`` (``@> ANY(...)`` for lists), so a GIN index
  ``USING gin (metadata jsonb_path_ops)`` serves them. Paths with an integer
  segment (which may index an array) use ``metadata #> '{a,0}' = $n`` instead,
  since containment does not follow array positions.
- Other metadata operators read ``metadata #> '{a,b}'`` behind a
  ``jsonb_typeof`` guard, so a value of another type is simply no match.
- ``$ne``/``$nin`` compile to ``NOT COALESCE(<positive form>, false)``: SQL's
  NULL for a missing value must count as "not equal", as it does in memory.
- Arrays (Mongo's rule: a scalar condition on an array matches when an element
  does). Equality and ``$in`` add the one-element array to the containment
  documents, ``metadata @> ANY('{"user": {"tags": "a"}}', '{"user": {"tags":
  ["a"]}}')``, so the GIN index still serves them (``jsonb_path_ops`` answers
  ``@>``; a nested scalar is not contained in an array, hence both documents).
  Globs and ranges test the elements in ``EXISTS (SELECT 1 FROM
  jsonb_array_elements(...))`` beside the scalar form (no index for those, as
  for their scalar forms on metadata).
- ``prediction.*`` fields exist only in pipeline edge conditions: compiling one
  raises ``DQLError(PREDICTION_ONLY_IN_EDGES)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from common.dql import (
    PREDICTION_ONLY_IN_EDGES,
    And,
    Condition,
    DQLError,
    FieldKind,
    FieldPath,
    Glob,
    Node,
    Op,
    SortKey,
    Value,
)

__all__ = ["compile_filter", "compile_keyset", "compile_order_by", "keyset_keys"]

_SEGMENT_RE = re.compile(r"[A-Za-z0-9_-]+")
_TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_ELEMENT_TEXT = "(_dql_e.v #>> '{}')"

_RANGE_SQL = {Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}
_COLUMN_CAST = {
    FieldKind.TEXT: "text",
    FieldKind.BOOL: "boolean",
    FieldKind.TIMESTAMP: "timestamptz",
}


@dataclass
class _Compiler:
    start: int
    prefix: str
    params: list[Any] = field(default_factory=list)

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"${self.start + len(self.params) - 1}"

    # -- building blocks ---------------------------------------------------

    def column(self, path: FieldPath) -> str:
        return f'{self.prefix}"{path.column}"'

    def json_ref(self, path: FieldPath) -> str:
        """``metadata #> '{a,b}'`` (jsonb). Segments are re-checked here because
        a FieldPath can be built without the parser."""
        for seg in path.json_path:
            if not _SEGMENT_RE.fullmatch(seg):
                raise DQLError(f"invalid metadata path segment {seg!r}")
        if path.column != "metadata" or not path.json_path:
            raise DQLError(f"invalid metadata field {path}")
        # Parenthesised: COLLATE and other operators bind tighter than #>.
        return f"({self.column(path)} #> '{{{','.join(path.json_path)}}}')"

    def json_text(self, path: FieldPath) -> str:
        """``(metadata #>> '{a,b}')`` (text)."""
        return self.json_ref(path).replace(" #> ", " #>> ", 1)

    def typed(self, path: FieldPath, json_type: str, expr: str) -> str:
        # Both sides of the AND are NULL-safe and cannot raise, so evaluation order
        # does not matter (PostgreSQL does not promise left-to-right).
        return f"(jsonb_typeof({self.json_ref(path)}) = '{json_type}' AND {expr})"

    def any_element(self, path: FieldPath, json_type: str, expr: str) -> str:
        """Whether an element of the array at ``path`` (none if it is not an array) has
        ``json_type`` and satisfies ``expr``, written over the element ``_dql_e.v``
        (jsonb; ``_ELEMENT_TEXT`` is its text)."""
        ref = self.json_ref(path)
        return (
            "EXISTS (SELECT 1 FROM jsonb_array_elements("
            f"CASE WHEN jsonb_typeof({ref}) = 'array' THEN {ref} END) AS _dql_e(v) "
            f"WHERE jsonb_typeof(_dql_e.v) = '{json_type}' AND {expr})"
        )

    @staticmethod
    def containment_doc(path: FieldPath, value: Any) -> str:
        doc: Any = value
        for seg in reversed(path.json_path):
            doc = {seg: doc}
        return json.dumps(doc)

    # -- operators ---------------------------------------------------------

    def json_in(self, path: FieldPath, operands: Sequence[Any]) -> str:
        """The value at ``path`` equals one of ``operands`` (JSON scalars, ``None``
        for JSON null), or is an array holding one of them."""
        if path.has_index_segment:
            ref = self.json_ref(path)
            values = self.param([json.dumps(v) for v in operands])
            arrays = self.param([json.dumps([v]) for v in operands])
            return (
                f"({ref} = ANY({values}::text[]::jsonb[])"
                f" OR {ref} @> ANY({arrays}::text[]::jsonb[]))"
            )
        docs = [self.containment_doc(path, v) for v in operands if v is not None]
        docs += [self.containment_doc(path, [v]) for v in operands]
        return f"{self.column(path)} @> ANY({self.param(docs)}::text[]::jsonb[])"

    def eq(self, path: FieldPath, operand: Value) -> str:
        kind = path.kind
        if operand is None:
            if kind is FieldKind.JSON:
                null = f"COALESCE(jsonb_typeof({self.json_ref(path)}), 'null') = 'null'"
                return f"({null} OR {self.json_in(path, [None])})"
            return f"{self.column(path)} IS NULL"
        if isinstance(operand, Glob):
            regex = self.param(f"^(?:{operand.regex})$")
            if kind is FieldKind.JSON:
                scalar = self.typed(path, "string", f"{self.json_text(path)} ~ {regex}::text")
                element = self.any_element(path, "string", f"{_ELEMENT_TEXT} ~ {regex}::text")
                return f"({scalar} OR {element})"
            # "C" so the regex's literal prefix can become a range on a "C" index.
            return f'{self.column(path)} COLLATE "C" ~ {regex}::text'
        if kind is FieldKind.JSON:
            return self.json_in(path, [operand])
        return f"{self.column(path)} = {self.param(operand)}::{_COLUMN_CAST[kind]}"

    def in_(self, path: FieldPath, operands: tuple[Value, ...]) -> str:
        kind = path.kind
        parts: list[str] = []
        if any(v is None for v in operands):
            parts.append(self.eq(path, None))
        parts.extend(self.eq(path, v) for v in operands if isinstance(v, Glob))
        plain = [v for v in operands if v is not None and not isinstance(v, Glob)]
        if plain:
            if kind is FieldKind.JSON:
                parts.append(self.json_in(path, plain))
            else:
                values = self.param(plain)
                parts.append(f"{self.column(path)} = ANY({values}::{_COLUMN_CAST[kind]}[])")
        if not parts:
            return "FALSE"
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def range_(self, path: FieldPath, op: Op, operand: Value) -> str:
        sql_op = _RANGE_SQL[op]
        kind = path.kind
        if kind is FieldKind.TIMESTAMP and isinstance(operand, datetime):
            return f"{self.column(path)} {sql_op} {self.param(operand)}::timestamptz"
        if kind is FieldKind.TEXT and isinstance(operand, str):
            return f'{self.column(path)} COLLATE "C" {sql_op} {self.param(operand)}::text'
        if kind is FieldKind.JSON and isinstance(operand, str):
            value = self.param(operand)
            scalar = self.typed(
                path, "string", f'{self.json_text(path)} COLLATE "C" {sql_op} {value}::text'
            )
            element = self.any_element(
                path, "string", f'{_ELEMENT_TEXT} COLLATE "C" {sql_op} {value}::text'
            )
            return f"({scalar} OR {element})"
        if (
            kind is FieldKind.JSON
            and isinstance(operand, int | float)
            and not isinstance(operand, bool)
        ):
            value = self.param(json.dumps(operand))
            scalar = self.typed(
                path, "number", f"{self.json_ref(path)} {sql_op} {value}::text::jsonb"
            )
            element = self.any_element(path, "number", f"_dql_e.v {sql_op} {value}::text::jsonb")
            return f"({scalar} OR {element})"
        raise DQLError(f"{op} on {path} cannot take {operand!r}")

    def exists(self, path: FieldPath, present: bool) -> str:
        ref = self.json_ref(path) if path.kind is FieldKind.JSON else self.column(path)
        return f"{ref} IS {'NOT ' if present else ''}NULL"

    def condition(self, cond: Condition) -> str:
        path, op, value = cond.field, cond.op, cond.value
        if path.is_prediction:
            raise DQLError(f"field {str(path)!r}: {PREDICTION_ONLY_IN_EDGES}")
        if op is Op.EXISTS:
            return self.exists(path, bool(value))
        if op in (Op.IN, Op.NIN):
            positive = self.in_(path, value if isinstance(value, tuple) else (value,))
        elif op in (Op.EQ, Op.NE):
            if isinstance(value, tuple):
                raise DQLError(f"{op} on {path} cannot take a list")
            positive = self.eq(path, value)
        else:
            if isinstance(value, tuple):
                raise DQLError(f"{op} on {path} cannot take a list")
            return self.range_(path, op, value)
        if op in (Op.NE, Op.NIN):
            return f"NOT COALESCE({positive}, false)"
        return positive

    def node(self, node: Node) -> str:
        if isinstance(node, Condition):
            return self.condition(node)
        if not node.children:
            return "TRUE" if isinstance(node, And) else "FALSE"
        parts = [self.node(child) for child in node.children]
        if len(parts) == 1:
            return parts[0]
        joiner = " AND " if isinstance(node, And) else " OR "
        return "(" + joiner.join(parts) + ")"


def _prefix(table: str | None) -> str:
    if table is None:
        return ""
    if not _TABLE_RE.fullmatch(table):
        raise ValueError(f"invalid table alias {table!r}")
    return f"{table}."


def compile_filter(
    node: Node, *, start: int = 1, table: str | None = None
) -> tuple[str, list[Any]]:
    """``(where_sql, params)`` for ``node``; placeholders are ``$start``, ``$start+1`` ...

    ``table`` qualifies the column names (``"i"`` gives ``i."dir"``). The SQL is
    a boolean expression without the ``WHERE`` keyword, ready to be AND-ed with
    the caller's own conditions (dataset, project scope)::

        where, params = compile_filter(node, start=2)
        await conn.fetch(f"SELECT id FROM items WHERE dataset_id = $1 AND {where}",
                         dataset_id, *params)
    """
    if start < 1:
        raise ValueError("parameter numbers start at 1")
    compiler = _Compiler(start=start, prefix=_prefix(table))
    return compiler.node(node), compiler.params


def compile_order_by(keys: Sequence[SortKey], *, table: str | None = None) -> str:
    """``ORDER BY ...`` for parsed sort keys, always ending on ``id`` as tiebreak.

    Text columns sort by code point (``COLLATE "C"``); metadata values sort by
    PostgreSQL's jsonb order (null < strings < numbers < booleans < arrays <
    objects) with missing values last in both directions.
    """
    compiler = _Compiler(start=1, prefix=_prefix(table))
    terms: list[str] = []
    has_id = False
    for key in keys:
        direction = "DESC" if key.descending else "ASC"
        if key.field.kind is FieldKind.JSON:
            terms.append(f"{compiler.json_ref(key.field)} {direction} NULLS LAST")
            continue
        column = compiler.column(key.field)
        if key.field.kind is FieldKind.TEXT:
            column += ' COLLATE "C"'
        terms.append(f"{column} {direction}")
        has_id = has_id or key.field.column == "id"
    if not has_id:
        terms.append(f"{compiler.column(FieldPath(('id',)))} ASC")
    return "ORDER BY " + ", ".join(terms)


_CASTS = {FieldKind.TEXT: "text", FieldKind.BOOL: "boolean", FieldKind.TIMESTAMP: "timestamptz"}
ID_KEY = SortKey(FieldPath(("id",)))


def keyset_keys(keys: Sequence[SortKey]) -> tuple[SortKey, ...]:
    """The sort keys as :func:`compile_order_by` orders by them (``id`` last as tiebreak);
    ``DQLError`` when one is a metadata field (missing values have no place to seek to)."""
    for key in keys:
        if key.field.kind is FieldKind.JSON:
            raise DQLError(
                f"cursor paging sorts by item columns only, not {'.'.join(key.field.segments)}; "
                "page by number (page) for a metadata sort",
                "/sort",
            )
    if any(key.field.column == "id" for key in keys):
        return tuple(keys)
    return (*keys, ID_KEY)


def compile_keyset(
    keys: Sequence[SortKey], values: Sequence[Any], *, start: int = 1, table: str | None = None
) -> tuple[str, list[Any]]:
    """``(sql, params)``: rows strictly after ``values`` in the order of ``keys`` (as
    :func:`keyset_keys` gives them), for keyset ("seek") paging.

    Keys of one direction compile to a row comparison, ``("filename" COLLATE "C", "id"
    COLLATE "C") > ($3, $4)``, which an index on ``(dataset_id, filename COLLATE "C",
    id COLLATE "C")`` answers as one range; mixed directions to the expanded form
    (``a > x OR (a = x AND b < y) ...``).
    """
    if len(keys) != len(values):
        raise ValueError("one value per sort key")
    compiler = _Compiler(start=start, prefix=_prefix(table))
    terms: list[str] = []
    placeholders: list[str] = []
    for key, value in zip(keys, values, strict=True):
        kind = key.field.kind
        if kind is FieldKind.JSON:
            raise ValueError("keyset paging needs column sort keys")
        column = compiler.column(key.field)
        if kind is FieldKind.TEXT:
            column += ' COLLATE "C"'
        terms.append(column)
        placeholders.append(f"{compiler.param(value)}::{_CASTS[kind]}")
    directions = {key.descending for key in keys}
    if len(directions) == 1:
        op = "<" if keys[0].descending else ">"
        return f"({', '.join(terms)}) {op} ({', '.join(placeholders)})", compiler.params
    clauses = []
    for n, key in enumerate(keys):
        equal = [f"{terms[i]} = {placeholders[i]}" for i in range(n)]
        op = "<" if key.descending else ">"
        clauses.append(" AND ".join([*equal, f"{terms[n]} {op} {placeholders[n]}"]))
    return "(" + " OR ".join(f"({c})" for c in clauses) + ")", compiler.params
