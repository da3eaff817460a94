"""DQL: Dataloop-style JSON filters over items, parsed once, evaluated two ways.

``parse_filter`` turns a JSON filter into a small typed AST (frozen dataclasses);
``matches`` evaluates it against one item dict in memory (trigger matching);
``dataset_service.repository.dql_sql`` compiles the same AST to a parameterised SQL ``WHERE``
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
- Prediction fields, in pipeline edge conditions only (``parse_filter(...,
  prediction=True)``; elsewhere they are refused with ``PREDICTION_ONLY_IN_EDGES``,
  and the SQL evaluator refuses them too): ``prediction.annotations.confidence``,
  ``prediction.annotations.label``, ``prediction.annotations.type``,
  ``prediction.count``, ``prediction.min_confidence``,
  ``prediction.max_confidence``, evaluated on ``prediction_document(item,
  annotations)``. ``prediction.annotations.<f>`` is the list of every
  annotation's ``f`` (Mongo's dotted path through an array), so the array rule
  below makes ``{"prediction.annotations.confidence": {"$gte": 0.9}}`` mean
  "some annotation is confident" and ``{"prediction.annotations.label":
  {"$nin": ["cat"]}}`` "no annotation is a cat"; "every annotation is
  confident" is ``{"prediction.min_confidence": {"$gte": 0.9}}`` (absent, so
  no match, when there are no annotations: add ``{"prediction.count": 0}`` in an
  ``$or`` to include those). Confidence and count fields take numbers, label and
  type strings (globs too).
- Operators: ``$eq``, ``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte``, ``$in``,
  ``$nin``, ``$exists``.

Semantics (identical in memory and in SQL):

- **Types are strict.** A string equals only a string, a number only a number
  (``1 == 1.0``), a boolean only a boolean. Comparing across types is no match,
  never an error. ``$gt``/``$gte``/``$lt``/``$lte`` take a number or a string:
  numbers compare numerically with numbers, strings compare by Unicode code
  point with strings (SQL uses ``COLLATE "C"``, which orders UTF-8 the same
  way). Metadata holds ISO timestamps as strings, so they compare as strings
  (uniformly formatted ISO strings sort chronologically). Objects in the item
  match no comparison; only ``$exists`` sees them.
- **Arrays follow MongoDB.** When the value at a metadata path is an array, a
  condition (``$eq`` or implicit, glob, ``$in``, ``$gt``/``$gte``/``$lt``/``$lte``)
  matches when *any element* matches it under the rules here (an element of
  another type, an object or a nested array is no match), and ``$ne``/``$nin``
  match when *no element* does (an empty array: ``$ne``/``$nin`` match, the
  others do not; ``{"f": null}`` matches an array holding a ``null``). So
  ``{"metadata.user.tags": "cat"}`` finds ``["cat", "dog"]`` and
  ``{"metadata.user.scores": {"$gt": 0.9}}`` finds ``[0.2, 0.95]``. Only the
  value at the end of the path spreads: metadata paths do not step through
  arrays of objects (use an index segment, ``metadata.user.boxes.0.label``), and
  there is no whole-array equality (operands are scalars). ``$exists`` sees the
  array itself (an empty one exists).
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

from common.dql.evaluator import MismatchCallback, matches
from common.dql.nodes import (
    COLUMNS,
    DEFAULT_MAX_DEPTH,
    PREDICTION_FIELDS,
    And,
    Condition,
    DQLError,
    FieldKind,
    FieldPath,
    Glob,
    Node,
    Op,
    Or,
    Scalar,
    SortKey,
    Value,
    glob_to_regex,
)
from common.dql.parser import (
    PREDICTION_ONLY_IN_EDGES,
    mentions,
    parse_field,
    parse_filter,
    parse_sort,
    parse_timestamp,
    uses_prediction,
    with_defaults,
)
from common.dql.prediction import AnnotationLike, prediction_document, prediction_fields

__all__ = [
    "COLUMNS",
    "DEFAULT_MAX_DEPTH",
    "PREDICTION_FIELDS",
    "PREDICTION_ONLY_IN_EDGES",
    "And",
    "AnnotationLike",
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
    "prediction_document",
    "prediction_fields",
    "uses_prediction",
    "with_defaults",
]
