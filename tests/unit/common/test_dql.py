"""DQL parser and in-memory evaluator, held to the shared case table."""

from __future__ import annotations

import re
from typing import Any

import pytest

from common.dql import (
    And,
    Condition,
    DQLError,
    FieldPath,
    Glob,
    Op,
    glob_to_regex,
    matches,
    mentions,
    parse_filter,
    parse_sort,
    prediction_document,
    uses_prediction,
    with_defaults,
)
from tests.unit.common.dql_cases import CASES, INVALID, ITEMS, Case, InvalidCase


def test_case_table_is_big_and_names_are_unique() -> None:
    assert len(CASES) >= 70
    names = [c.name for c in CASES] + [c.name for c in INVALID]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_in_memory_evaluator_matches_case_table(case: Case) -> None:
    node = parse_filter(case.filter, defaults=case.defaults, prediction=case.edge)
    got = {item["id"] for item in ITEMS if matches(node, item)}
    assert got == set(case.expected)


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.name)
def test_invalid_filter_names_the_offending_path(case: InvalidCase) -> None:
    with pytest.raises(DQLError) as raised:
        parse_filter(case.filter, max_depth=case.max_depth, prediction=case.prediction)
    assert raised.value.path == case.path
    assert raised.value.message
    # The rendered error carries both what and where.
    assert raised.value.message in str(raised.value)
    assert (case.path or "/") in str(raised.value)


def test_error_messages_say_what_is_wrong() -> None:
    cases: list[tuple[Any, str]] = [
        ({"dir": {"$regex": "x"}}, "unknown operator '$regex'"),
        ({"metadata.user.x": {"$in": "a"}}, "$in needs a list"),
        ({"metadata.user.x": {"$exists": "yes"}}, "$exists needs true or false"),
        ({"$and": []}, "at least one"),
        ({"size": 1}, "unknown field 'size'"),
        ([], "must be a JSON object"),
        ({"created_at": {"$gt": "soon"}}, "ISO 8601"),
    ]
    for filter_, fragment in cases:
        with pytest.raises(DQLError, match=re.escape(fragment)):
            parse_filter(filter_)


def test_depth_limit_is_inclusive() -> None:
    node: dict[str, Any] = {"dir": "/"}
    for _ in range(10):
        node = {"$and": [node]}
    parse_filter(node)  # exactly the default limit
    with pytest.raises(DQLError):
        parse_filter({"$or": [node]})
    parse_filter({"$or": [node]}, max_depth=11)


def test_with_defaults_adds_only_unmentioned_fields() -> None:
    hidden = Condition(FieldPath(("hidden",)), Op.EQ, False)
    file_only = Condition(FieldPath(("type",)), Op.EQ, "file")
    assert with_defaults(And(())) == And((hidden, file_only))
    node = parse_filter({"type": "dir"})
    assert with_defaults(node) == And((node, hidden))
    both = parse_filter({"$or": [{"type": "dir"}, {"hidden": True}]})
    assert with_defaults(both) is both
    assert mentions(both, "hidden")
    assert not mentions(both, "dir")


def test_parse_flattens_single_condition_and_keeps_types() -> None:
    node = parse_filter({"metadata.system.mimetype": "image/*"})
    assert node == Condition(FieldPath(("metadata", "system", "mimetype")), Op.EQ, Glob("image/*"))
    assert parse_filter({"name": "a.png"}) == Condition(FieldPath(("name",)), Op.EQ, "a.png")


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("image/*", ["image/png", "image/"], ["image/png/x", "video/png", "image"]),
        ("/a/**", ["/a", "/a/", "/a/b", "/a/b/c"], ["/ab", "/b/a", "a"]),
        ("/a/**/z", ["/a/z", "/a/b/z", "/a/b/c/z"], ["/az", "/a/b/zz"]),
        ("**/z.png", ["z.png", "/z.png", "a/b/z.png"], ["az.png", "z.pngx"]),
        ("a**b", ["ab", "a/x/b"], ["a/x/c"]),
        ("?.txt", ["a.txt"], ["/.txt", "ab.txt", ".txt"]),
        ("a\\*b?", ["a*bc"], ["axbc"]),
        ("(x)+[y]*", ["(x)+[y]", "(x)+[y]zz"], ["x", "(x)+y"]),
        ("$^.|{1}*", ["$^.|{1}", "$^.|{1}q"], ["a"]),
    ],
)
def test_glob_semantics(pattern: str, matching: list[str], not_matching: list[str]) -> None:
    glob = Glob(pattern)
    for value in matching:
        assert glob.match(value), (pattern, value, glob_to_regex(pattern))
    for value in not_matching:
        assert not glob.match(value), (pattern, value, glob_to_regex(pattern))


def test_strings_without_wildcards_are_literal() -> None:
    node = parse_filter({"metadata.user.note": "a\\b"})
    assert isinstance(node, Condition)
    assert node.value == "a\\b"


def test_evaluator_never_raises_on_odd_item_data() -> None:
    node = parse_filter(
        {
            "created_at": {"$gt": "2024-01-01"},
            "name": "a*",
            "metadata.user.x.y": {"$gte": 1},
            "hidden": False,
        }
    )
    odd_items: list[dict[str, Any]] = [
        {},
        {"metadata": None, "created_at": "not a date", "name": 5, "hidden": "no"},
        {"metadata": [1, 2], "created_at": 17, "name": None},
        {"metadata": {"user": {"x": [1]}}, "created_at": "2025-01-01T00:00:00"},
        {"metadata": {"user": "x"}, "name": ["a"]},
    ]
    for item in odd_items:
        assert matches(node, item) is False


def test_mismatch_callback_reports_type_mismatches() -> None:
    seen: list[tuple[str, Any]] = []
    node = parse_filter(
        {"$or": [{"metadata.user.score": {"$gt": 0.5}}, {"metadata.user.score": {"$ne": 1}}]}
    )
    item = {"metadata": {"user": {"score": "high"}}}
    assert matches(node, item, on_mismatch=lambda cond, value: seen.append((cond.op, value)))
    assert seen == [(Op.GT, "high"), (Op.NE, "high")]


def test_timestamp_columns_accept_datetimes_and_naive_strings_as_utc() -> None:
    from datetime import UTC, datetime

    node = parse_filter({"created_at": "2024-01-01T10:00:00"})
    assert matches(node, {"created_at": datetime(2024, 1, 1, 10, tzinfo=UTC)})
    assert matches(node, {"created_at": "2024-01-01T11:00:00+01:00"})
    assert not matches(node, {"created_at": "2024-01-01T10:00:00+01:00"})


def test_parse_sort_forms() -> None:
    keys = parse_sort([{"field": "name"}, {"field": "metadata.user.score", "order": "DESC"}])
    assert [(str(k.field), k.descending) for k in keys] == [
        ("name", False),
        ("metadata.user.score", True),
    ]
    keys = parse_sort({"created_at": -1, "id": "ascending"})
    assert [(str(k.field), k.descending) for k in keys] == [("created_at", True), ("id", False)]
    assert parse_sort(None) == ()
    assert parse_sort([]) == ()


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ("name", ""),
        ([5], "/0"),
        ([{"field": "nope"}], "/0/field"),
        ([{"field": "name", "order": "up"}], "/0/order"),
        ([{"field": "name", "dir": "asc"}], "/0"),
        ([{"order": "asc"}], "/0/field"),
        ({"name": "sideways"}, "/name"),
        ({"name": True}, "/name"),
    ],
)
def test_invalid_sort_names_the_offending_path(spec: Any, path: str) -> None:
    with pytest.raises(DQLError) as raised:
        parse_sort(spec)
    assert raised.value.path == path


def test_prediction_document_takes_contract_annotations() -> None:
    from common.contracts.model_serving import PredictedAnnotation

    annotations = [
        PredictedAnnotation(type="box", label="cat", confidence=0.95, coordinates=[[0, 0], [1, 1]]),
        PredictedAnnotation(type="box", label="dog", confidence=0.7),
    ]
    doc = prediction_document({"metadata": {"user": {"camera": "a7"}}}, annotations)
    assert doc["prediction"] == {
        "annotations": [
            {"label": "cat", "confidence": 0.95, "type": "box"},
            {"label": "dog", "confidence": 0.7, "type": "box"},
        ],
        "count": 2,
        "min_confidence": 0.7,
        "max_confidence": 0.95,
    }
    confident = parse_filter(
        {"metadata.user.camera": "a7", "prediction.min_confidence": {"$gte": 0.9}},
        prediction=True,
    )
    some = parse_filter({"prediction.annotations.confidence": {"$gte": 0.9}}, prediction=True)
    assert not matches(confident, doc)
    assert matches(some, doc)
    assert uses_prediction(some)
    assert not uses_prediction(parse_filter({"metadata.user.camera": "a7"}))
    assert prediction_document({}, []) == {"prediction": {"annotations": [], "count": 0}}


def test_array_mismatches_are_reported_only_when_no_element_matches() -> None:
    seen: list[Any] = []
    node = parse_filter({"metadata.user.x": {"$gt": 1}})

    def hear(cond: Condition, value: Any) -> None:
        seen.append(value)

    assert matches(node, {"metadata": {"user": {"x": ["a", 2]}}}, on_mismatch=hear)
    assert not matches(node, {"metadata": {"user": {"x": ["a", 0]}}}, on_mismatch=hear)
    assert seen == [["a", 0]]
