"""The DQL case table: one list of filters with the ids they must match.

tests/unit/common/test_dql.py runs it through the in-memory evaluator and
tests/integration/dataset/test_dql_sql.py through the SQL compiler on a real
PostgreSQL; both must give exactly ``expected``. Add a case here and both
evaluators are held to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common.dql import prediction_document


def _item(
    n: int,
    name: str,
    dir_: str,
    metadata: dict[str, Any],
    *,
    created: str,
    updated: str | None = None,
    dataset: str = "ds1",
    type_: str = "file",
    hidden: bool = False,
    filename: str | None = None,
) -> dict[str, Any]:
    return {
        "id": f"it{n:02d}",
        "dataset_id": dataset,
        "name": name,
        "filename": filename or f"{dir_.rstrip('/')}/{name}",
        "dir": dir_,
        "type": type_,
        "hidden": hidden,
        "created_at": created,
        "updated_at": updated or created,
        "metadata": metadata,
    }


def _image(mimetype: str, size: float) -> dict[str, Any]:
    return {"mimetype": mimetype, "size": size}


ITEMS: list[dict[str, Any]] = [
    _item(
        1,
        "cat.png",
        "/batch1",
        {
            "system": _image("image/png", 2048),
            "user": {
                "label": "cat",
                "score": 0.91,
                "reviewed": True,
                "tags": ["a", "b"],
                "info": {"source": "camera", "rank": 1},
                "nums": [1, 5.5, 10],
                "words": ["cat", "dog"],
            },
        },
        created="2024-01-10T10:00:00Z",
    ),
    _item(
        2,
        "dog.jpg",
        "/batch1/sub",
        {
            "system": _image("image/jpeg", 10240),
            "user": {
                "label": "dog",
                "score": 0.45,
                "reviewed": False,
                "info": {"source": "web", "rank": 2},
                "nums": [20],
                "words": ["bird/feather", "Cat"],
            },
        },
        created="2024-02-01T00:00:00Z",
        updated="2024-03-01T12:00:00Z",
    ),
    _item(
        3,
        "notes.txt",
        "/batch2",
        # A score and a reviewed flag of the "wrong" type: strings.
        {
            "system": _image("text/plain", 120),
            "user": {"label": None, "score": "high", "reviewed": "yes", "nums": 5.5},
        },
        created="2024-02-15T08:30:00+02:00",
    ),
    _item(
        4,
        "scan.pdf",
        "/",
        {"system": _image("application/pdf", 500000), "user": {}},
        created="2023-12-31T23:59:59Z",
        updated="2024-01-01T00:00:00Z",
    ),
    _item(
        5,
        "hidden.png",
        "/batch1",
        {"system": _image("image/png", 1000), "user": {"label": "cat"}},
        created="2024-01-20T00:00:00Z",
        hidden=True,
    ),
    _item(
        6,
        "batch1",
        "/",
        {"system": {}},
        created="2024-01-01T00:00:00Z",
        type_="dir",
    ),
    _item(
        7,
        "deep.png",
        "/batch1/sub/deeper",
        {
            "system": _image("image/png", 4096),
            "user": {
                "label": "bird",
                "score": 1,
                "nested": {"a": {"b": {"c": 3}}},
                "mixed": ["cat", 3, True, None, {"k": 1}, [4]],
                "nums": [],
            },
        },
        created="2024-03-05T00:00:00Z",
    ),
    _item(
        8,
        "prompt.json",
        "/prompts",
        {
            "system": _image("application/json", 300),
            "user": {
                "label": "Cat",
                "score": -2.5,
                "count": 0,
                "reviewed": None,
                "words": [],
                "mixed": [False, "2"],
            },
        },
        created="2024-03-10T00:00:00Z",
    ),
    _item(
        9,
        "frame_001.jpg",
        "/video/frames",
        {
            "system": _image("image/jpeg", 2048.0),
            "user": {"score": None, "reviewed": True, "tags": []},
        },
        created="2024-04-01T00:00:00Z",
    ),
    _item(
        10,
        "photo_2.PNG",
        "/batch10",
        {
            "system": _image("image/png", 8192),
            "user": {
                "label": "cat",
                "tags": "a",
                "items": [{"x": 1}, 5, "z"],
                "2024": {"q": 4},
            },
        },
        created="2024-04-02T00:00:00Z",
    ),
    _item(
        11,
        "cat.png",
        "/batch1",
        {"system": _image("image/png", 2048), "user": {"label": "cat", "score": 0.91}},
        created="2024-05-01T00:00:00Z",
        dataset="ds2",
    ),
    _item(
        12,
        "weird%_name*.png",
        "/batch_1",
        {
            "system": _image("image/png", 64),
            "user": {
                "note": "50% off",
                "pattern": "a*b",
                "multi": "line1\nline2",
                "score": True,
            },
        },
        created="2024-05-02T00:00:00Z",
    ),
    _item(13, "blob", "/misc", {}, created="2024-05-03T00:00:00Z"),
]
"""The sample items (ids it01..it13)."""

_PREDICTIONS: dict[str, list[dict[str, Any]]] = {
    "it01": [
        {"label": "cat", "confidence": 0.95, "type": "box"},
        {"label": "dog", "confidence": 0.6, "type": "box"},
    ],
    "it02": [{"label": "dog", "confidence": 0.97, "type": "classification"}],
    "it03": [],
    "it04": [{"label": "hello", "confidence": 0.5, "type": "text"}],
}
# Pipeline edge conditions see the prediction beside the item; the other items carry
# none (every prediction.* field is missing there). The SQL loader ignores the key.
for _item_doc in ITEMS:
    if _item_doc["id"] in _PREDICTIONS:
        _item_doc.update(prediction_document({}, _PREDICTIONS[_item_doc["id"]]))

ALL_IDS: frozenset[str] = frozenset(item["id"] for item in ITEMS)


def ids(*numbers: int) -> frozenset[str]:
    """``ids(1, 5)`` -> ``{"it01", "it05"}``."""
    return frozenset(f"it{n:02d}" for n in numbers)


def all_but(*numbers: int) -> frozenset[str]:
    """Every sample id except the given ones."""
    return ALL_IDS - ids(*numbers)


IMAGES = ids(1, 2, 5, 7, 9, 10, 11, 12)
BATCH1_TREE = ids(1, 2, 5, 7, 11)


@dataclass(frozen=True)
class Case:
    """A filter and the sample ids it matches (after ``with_defaults`` if ``defaults``).

    ``edge`` marks a pipeline edge condition (``prediction.*`` fields): parsed with
    ``prediction=True`` and evaluated in memory only; the SQL evaluator must refuse it.
    """

    name: str
    filter: dict[str, Any]
    expected: frozenset[str]
    defaults: bool = False
    edge: bool = False


CASES: list[Case] = [
    # --- the empty filter and the defaults ----------------------------------
    Case("empty_matches_all", {}, ALL_IDS),
    Case("empty_with_defaults_hides_hidden_and_dirs", {}, all_but(5, 6), defaults=True),
    Case("implicit_eq_dir", {"dir": "/batch1"}, ids(1, 5, 11)),
    Case("implicit_eq_dir_with_defaults", {"dir": "/batch1"}, ids(1, 11), defaults=True),
    Case("hidden_true", {"hidden": True}, ids(5)),
    Case("mentioning_hidden_drops_its_default", {"hidden": True}, ids(5), defaults=True),
    Case("mentioning_type_drops_its_default", {"type": "dir"}, ids(6), defaults=True),
    Case(
        "hidden_mentioned_inside_or_counts",
        {"$or": [{"hidden": True}, {"name": "cat.png"}]},
        ids(1, 5, 11),
        defaults=True,
    ),
    Case(
        "type_mentioned_deep_inside_counts",
        {"$or": [{"type": "dir"}, {"dir": "/batch2"}]},
        ids(3, 6),
        defaults=True,
    ),
    Case(
        "explicit_defaults_equal_implicit",
        {"hidden": False, "type": "file"},
        all_but(5, 6),
    ),
    # --- columns ------------------------------------------------------------
    Case("explicit_eq_name", {"name": {"$eq": "cat.png"}}, ids(1, 11)),
    Case("dataset_id", {"dataset_id": "ds2"}, ids(11)),
    Case("id_in", {"id": {"$in": ["it01", "it03", "nope"]}}, ids(1, 3)),
    Case("id_nin", {"id": {"$nin": ["it01", "it02"]}}, all_but(1, 2)),
    Case("name_ne", {"name": {"$ne": "cat.png"}}, all_but(1, 11)),
    Case("type_ne_file", {"type": {"$ne": "file"}}, ids(6)),
    Case("hidden_in", {"hidden": {"$in": [True]}}, ids(5)),
    Case("hidden_ne_true", {"hidden": {"$ne": True}}, all_but(5)),
    Case("dir_root", {"dir": "/"}, ids(4, 6)),
    Case("column_exists_true", {"name": {"$exists": True}}, ALL_IDS),
    Case("column_exists_false", {"dir": {"$exists": False}}, frozenset()),
    Case("column_eq_null_matches_nothing", {"name": None}, frozenset()),
    Case("column_ne_null_matches_all", {"name": {"$ne": None}}, ALL_IDS),
    Case("name_lt_code_point", {"name": {"$lt": "c"}}, ids(6, 13)),
    Case("dir_lt_code_point", {"dir": {"$lt": "/batch_"}}, ids(1, 2, 3, 4, 5, 6, 7, 10, 11)),
    Case("name_range", {"name": {"$gte": "p", "$lt": "q"}}, ids(8, 10)),
    Case("quote_in_value_is_a_parameter", {"name": "x'; DROP TABLE items; --"}, frozenset()),
    # --- globs --------------------------------------------------------------
    Case("glob_mimetype_image", {"metadata.system.mimetype": "image/*"}, IMAGES),
    Case(
        "glob_mimetype_image_with_defaults",
        {"metadata.system.mimetype": "image/*"},
        IMAGES - ids(5),
        defaults=True,
    ),
    Case("glob_dir_tree_includes_itself", {"dir": "/batch1/**"}, BATCH1_TREE),
    Case("glob_star_stays_in_one_dir", {"dir": "/batch1/*"}, ids(2)),
    Case("glob_filename_one_level", {"filename": "/batch1/*.png"}, ids(1, 5, 11)),
    Case("glob_filename_any_depth", {"filename": "/batch1/**.png"}, ids(1, 5, 7, 11)),
    Case("glob_leading_globstar", {"filename": "**/deep.png"}, ids(7)),
    Case("glob_middle_globstar", {"dir": "/batch1/**/deeper"}, ids(7)),
    Case("glob_question_mark", {"name": "?at.png"}, ids(1, 11)),
    Case("glob_is_case_sensitive", {"name": "*.PNG"}, ids(10)),
    Case("glob_suffix", {"name": "*.png"}, ids(1, 5, 7, 11, 12)),
    Case("underscore_is_literal", {"dir": "/batch_1"}, ids(12)),
    Case("glob_escaped_star", {"name": "weird%_name\\*.png"}, ids(12)),
    Case("glob_percent_is_literal", {"name": "%*"}, frozenset()),
    Case("glob_contains_percent", {"name": "*%*"}, ids(12)),
    Case("glob_underscore_is_literal", {"metadata.user.note": "5_*"}, frozenset()),
    Case("glob_percent_value", {"metadata.user.note": "50%*"}, ids(12)),
    Case("glob_star_matches_a_star", {"metadata.user.pattern": "a*b"}, ids(12)),
    Case("glob_escaped_star_literal_only", {"metadata.user.pattern": "a\\*c"}, frozenset()),
    Case("glob_star_crosses_newline", {"metadata.user.multi": "line1*"}, ids(12)),
    Case("glob_question_matches_newline", {"metadata.user.multi": "line1?line2"}, ids(12)),
    Case("glob_star_needs_no_slash", {"metadata.system.mimetype": "*"}, frozenset()),
    Case("glob_globstar_any_string", {"metadata.system.mimetype": "**"}, all_but(6, 13)),
    Case("glob_root_globstar", {"dir": "/**"}, ALL_IDS),
    Case("glob_ne", {"metadata.system.mimetype": {"$ne": "image/*"}}, ids(3, 4, 6, 8, 13)),
    # --- numbers ------------------------------------------------------------
    Case("size_gt", {"metadata.system.size": {"$gt": 2048}}, ids(2, 4, 7, 10)),
    Case("size_gte", {"metadata.system.size": {"$gte": 2048}}, ids(1, 2, 4, 7, 9, 10, 11)),
    Case("size_eq_int_matches_float", {"metadata.system.size": 2048}, ids(1, 9, 11)),
    Case("size_lt", {"metadata.system.size": {"$lt": 300}}, ids(3, 12)),
    Case("size_lte", {"metadata.system.size": {"$lte": 300}}, ids(3, 8, 12)),
    Case("size_range", {"metadata.system.size": {"$gt": 1000, "$lte": 4096}}, ids(1, 7, 9, 11)),
    Case("score_gt_fraction", {"metadata.user.score": {"$gt": 0.5}}, ids(1, 7, 11)),
    Case("score_lt_zero", {"metadata.user.score": {"$lt": 0}}, ids(8)),
    Case("number_one_is_not_true", {"metadata.user.score": 1}, ids(7)),
    Case("true_is_not_number_one", {"metadata.user.score": True}, ids(12)),
    Case("zero_is_not_false", {"metadata.user.count": 0}, ids(8)),
    Case("false_is_not_zero", {"metadata.user.count": False}, frozenset()),
    Case("score_ne_counts_missing", {"metadata.user.score": {"$ne": 0.91}}, all_but(1, 11)),
    Case(
        "score_in_mixed_types",
        {"metadata.user.score": {"$in": [0.91, "high", True]}},
        ids(1, 3, 11, 12),
    ),
    Case(
        "score_nin_mixed_types",
        {"metadata.user.score": {"$nin": [0.91, "high"]}},
        all_but(1, 3, 11),
    ),
    # --- type mismatches: no match, never an error ----------------------------
    Case("number_vs_string_field", {"metadata.system.mimetype": {"$gt": 5}}, frozenset()),
    Case("string_range_on_mixed_field", {"metadata.user.score": {"$gt": "a"}}, ids(3)),
    Case("eq_number_vs_string_field", {"metadata.user.label": 5}, frozenset()),
    Case("string_flag", {"metadata.user.reviewed": "yes"}, ids(3)),
    Case("range_on_object_is_no_match", {"metadata.user.nested.a": {"$gt": 0}}, frozenset()),
    Case("scalar_eq_finds_it_in_an_array", {"metadata.user.tags": "a"}, ids(1, 10)),
    Case("string_range_code_point", {"metadata.user.label": {"$gte": "c"}}, ids(1, 2, 5, 10, 11)),
    # --- booleans, null and missing ------------------------------------------
    Case("bool_true", {"metadata.user.reviewed": True}, ids(1, 9)),
    Case("bool_false", {"metadata.user.reviewed": False}, ids(2)),
    Case("bool_ne_true_counts_missing", {"metadata.user.reviewed": {"$ne": True}}, all_but(1, 9)),
    Case(
        "exists_true_includes_null",
        {"metadata.user.reviewed": {"$exists": True}},
        ids(1, 2, 3, 8, 9),
    ),
    Case(
        "exists_false",
        {"metadata.user.reviewed": {"$exists": False}},
        ids(4, 5, 6, 7, 10, 11, 12, 13),
    ),
    Case(
        "eq_null_matches_null_and_missing",
        {"metadata.user.reviewed": None},
        ids(4, 5, 6, 7, 8, 10, 11, 12, 13),
    ),
    Case(
        "ne_null_means_present_and_not_null",
        {"metadata.user.reviewed": {"$ne": None}},
        ids(1, 2, 3, 9),
    ),
    Case("label_null", {"metadata.user.label": None}, ids(3, 4, 6, 9, 12, 13)),
    Case("score_null", {"metadata.user.score": None}, ids(4, 5, 6, 9, 10, 13)),
    Case("score_exists", {"metadata.user.score": {"$exists": True}}, ids(1, 2, 3, 7, 8, 9, 11, 12)),
    Case("mimetype_missing", {"metadata.system.mimetype": {"$exists": False}}, ids(6, 13)),
    Case("system_object_exists", {"metadata.system": {"$exists": True}}, all_but(13)),
    Case("user_object_missing", {"metadata.user": {"$exists": False}}, ids(6, 13)),
    Case(
        "path_through_string_is_missing",
        {"metadata.system.mimetype.x": {"$exists": True}},
        frozenset(),
    ),
    Case("path_through_string_ne", {"metadata.system.mimetype.x": {"$ne": "y"}}, ALL_IDS),
    # --- strings, $in / $nin -------------------------------------------------
    Case("label_eq_case_sensitive", {"metadata.user.label": "cat"}, ids(1, 5, 10, 11)),
    Case("label_in", {"metadata.user.label": {"$in": ["cat", "dog"]}}, ids(1, 2, 5, 10, 11)),
    Case(
        "label_in_with_null",
        {"metadata.user.label": {"$in": ["cat", None]}},
        ids(1, 3, 4, 5, 6, 9, 10, 11, 12, 13),
    ),
    Case(
        "label_nin",
        {"metadata.user.label": {"$nin": ["cat", "dog"]}},
        ids(3, 4, 6, 7, 8, 9, 12, 13),
    ),
    Case("label_in_glob", {"metadata.user.label": {"$in": ["?at"]}}, ids(1, 5, 8, 10, 11)),
    Case("in_empty_matches_nothing", {"metadata.user.label": {"$in": []}}, frozenset()),
    Case("nin_empty_matches_all", {"metadata.user.label": {"$nin": []}}, ALL_IDS),
    Case(
        "mimetype_in_globs_and_literals",
        {"metadata.system.mimetype": {"$in": ["image/*", "application/pdf"]}},
        IMAGES | ids(4),
    ),
    Case(
        "mimetype_nin_glob",
        {"metadata.system.mimetype": {"$nin": ["image/*"]}},
        ids(3, 4, 6, 8, 13),
    ),
    Case("dir_in_globs", {"dir": {"$in": ["/video/**", "/prompts"]}}, ids(8, 9)),
    Case("dir_nin_globs", {"dir": {"$nin": ["/batch1/**", "/"]}}, ids(3, 8, 9, 10, 12, 13)),
    # --- nested paths, arrays ------------------------------------------------
    Case("nested_string", {"metadata.user.info.source": "camera"}, ids(1)),
    Case("nested_number_gte", {"metadata.user.info.rank": {"$gte": 1}}, ids(1, 2)),
    Case("deeply_nested", {"metadata.user.nested.a.b.c": 3}, ids(7)),
    Case("object_exists", {"metadata.user.nested.a": {"$exists": True}}, ids(7)),
    Case("array_exists", {"metadata.user.tags": {"$exists": True}}, ids(1, 9, 10)),
    Case("array_index", {"metadata.user.tags.0": "a"}, ids(1)),
    Case("array_negative_index", {"metadata.user.tags.-1": "b"}, ids(1)),
    Case("array_index_into_object", {"metadata.user.items.0.x": 1}, ids(10)),
    Case("array_index_gt", {"metadata.user.items.1": {"$gt": 4}}, ids(10)),
    Case("array_index_in", {"metadata.user.items.1": {"$in": [5, 6]}}, ids(10)),
    Case("array_index_out_of_range", {"metadata.user.items.5": {"$exists": False}}, ALL_IDS),
    Case("numeric_key_in_object", {"metadata.user.2024.q": 4}, ids(10)),
    # --- arrays, Mongo's rule: any element matches ($ne/$nin: none does) -------
    Case("array_strings_eq", {"metadata.user.words": "cat"}, ids(1)),
    Case("array_strings_eq_case_sensitive", {"metadata.user.words": "Cat"}, ids(2)),
    Case("array_strings_ne_means_no_element", {"metadata.user.tags": {"$ne": "a"}}, all_but(1, 10)),
    Case("array_strings_ne", {"metadata.user.words": {"$ne": "cat"}}, all_but(1)),
    Case("array_strings_in", {"metadata.user.words": {"$in": ["dog", "Cat"]}}, ids(1, 2)),
    Case(
        "array_strings_nin",
        {"metadata.user.words": {"$nin": ["dog", "Cat"]}},
        all_but(1, 2),
    ),
    Case("array_strings_glob", {"metadata.user.words": "*/*"}, ids(2)),
    Case("array_strings_glob_prefix", {"metadata.user.words": "c*"}, ids(1)),
    Case("array_strings_in_glob", {"metadata.user.words": {"$in": ["?at", "x"]}}, ids(1, 2)),
    Case("array_strings_nin_glob", {"metadata.user.words": {"$nin": ["*a*"]}}, all_but(1, 2)),
    Case("array_strings_ne_glob", {"metadata.user.words": {"$ne": "b**"}}, all_but(2)),
    Case("array_strings_gt", {"metadata.user.words": {"$gt": "d"}}, ids(1)),
    Case("array_numbers_eq", {"metadata.user.nums": 10}, ids(1)),
    Case("array_or_scalar_eq", {"metadata.user.nums": 5.5}, ids(1, 3)),
    Case("array_numbers_int_equals_float", {"metadata.user.nums": 1.0}, ids(1)),
    Case("array_numbers_string_operand", {"metadata.user.nums": "10"}, frozenset()),
    Case("array_numbers_gt", {"metadata.user.nums": {"$gt": 9}}, ids(1, 2)),
    Case("array_numbers_lt", {"metadata.user.nums": {"$lt": 2}}, ids(1)),
    Case("array_numbers_lte_with_scalar", {"metadata.user.nums": {"$lte": 5.5}}, ids(1, 3)),
    # As in MongoDB without $elemMatch: each bound may be met by another element.
    Case(
        "array_range_bounds_match_separately",
        {"metadata.user.nums": {"$gt": 6, "$lt": 9}},
        ids(1),
    ),
    Case("array_numbers_in", {"metadata.user.nums": {"$in": [20, 1]}}, ids(1, 2)),
    Case("array_numbers_nin", {"metadata.user.nums": {"$nin": [1, 20]}}, all_but(1, 2)),
    Case("array_numbers_ne", {"metadata.user.nums": {"$ne": 20}}, all_but(2)),
    Case(
        "empty_array_matches_no_eq", {"metadata.user.words": {"$in": ["", None]}}, all_but(1, 2, 8)
    ),
    Case("empty_array_ne", {"metadata.user.nums": {"$ne": 1}}, all_but(1)),
    Case("empty_array_exists", {"metadata.user.words": {"$exists": True}}, ids(1, 2, 8)),
    Case("array_exists_with_scalar", {"metadata.user.nums": {"$exists": True}}, ids(1, 2, 3, 7)),
    Case("array_mixed_string", {"metadata.user.mixed": "cat"}, ids(7)),
    Case("array_mixed_number", {"metadata.user.mixed": 3}, ids(7)),
    Case("array_mixed_true", {"metadata.user.mixed": True}, ids(7)),
    Case("array_mixed_one_is_not_true", {"metadata.user.mixed": 1}, frozenset()),
    Case("array_mixed_false", {"metadata.user.mixed": False}, ids(8)),
    Case("array_mixed_eq_null_holds_null", {"metadata.user.mixed": None}, all_but(8)),
    Case("array_mixed_ne_null", {"metadata.user.mixed": {"$ne": None}}, ids(8)),
    Case("array_nested_array_not_unwrapped", {"metadata.user.mixed": 4}, frozenset()),
    Case(
        "array_of_objects_not_stepped_through",
        {"metadata.user.mixed.k": {"$exists": False}},
        ALL_IDS,
    ),
    Case("array_mixed_gt_number", {"metadata.user.mixed": {"$gt": 2}}, ids(7)),
    Case("array_mixed_gte_string", {"metadata.user.mixed": {"$gte": "2"}}, ids(7, 8)),
    Case("array_mixed_in", {"metadata.user.mixed": {"$in": ["2", 3]}}, ids(7, 8)),
    Case("array_mixed_nin", {"metadata.user.mixed": {"$nin": [False, "cat"]}}, all_but(7, 8)),
    Case("array_mixed_glob_one_char", {"metadata.user.mixed": "?"}, ids(8)),
    Case("array_index_still_indexes", {"metadata.user.nums.0": 1}, ids(1)),
    Case("array_negative_index_gt", {"metadata.user.nums.-1": {"$gt": 15}}, ids(2)),
    Case("array_at_index_path_eq", {"metadata.user.mixed.5": 4}, ids(7)),
    Case("array_at_index_path_gt", {"metadata.user.mixed.5": {"$gt": 3}}, ids(7)),
    Case("array_at_index_path_ne", {"metadata.user.mixed.5": {"$ne": 4}}, all_but(7)),
    Case("array_at_index_path_in", {"metadata.user.mixed.5": {"$in": [9, 4]}}, ids(7)),
    # --- pipeline edge conditions: the prediction (in memory only) ---------------
    Case(
        "edge_some_annotation_confident",
        {"prediction.annotations.confidence": {"$gte": 0.9}},
        ids(1, 2),
        edge=True,
    ),
    Case(
        "edge_every_annotation_confident",
        {"prediction.min_confidence": {"$gte": 0.9}},
        ids(2),
        edge=True,
    ),
    Case(
        "edge_no_annotation_confident",
        {"prediction.max_confidence": {"$lt": 0.9}},
        ids(4),
        edge=True,
    ),
    Case(
        "edge_confident_or_empty",
        {"$or": [{"prediction.min_confidence": {"$gte": 0.9}}, {"prediction.count": 0}]},
        ids(2, 3),
        edge=True,
    ),
    Case("edge_label", {"prediction.annotations.label": "dog"}, ids(1, 2), edge=True),
    Case("edge_label_glob", {"prediction.annotations.label": "c*"}, ids(1), edge=True),
    Case(
        "edge_label_nin_means_no_annotation",
        {"prediction.annotations.label": {"$nin": ["cat"]}},
        all_but(1),
        edge=True,
    ),
    Case("edge_type", {"prediction.annotations.type": "box"}, ids(1), edge=True),
    Case("edge_count_zero", {"prediction.count": 0}, ids(3), edge=True),
    Case("edge_count_gte", {"prediction.count": {"$gte": 1}}, ids(1, 2, 4), edge=True),
    Case(
        "edge_confidence_in",
        {"prediction.annotations.confidence": {"$in": [0.6, 0.5]}},
        ids(1, 4),
        edge=True,
    ),
    Case(
        "edge_empty_prediction_has_no_fields",
        {"prediction.annotations.label": {"$exists": True}},
        ids(1, 2, 4),
        edge=True,
    ),
    Case(
        "edge_empty_prediction_has_no_min",
        {"prediction.min_confidence": {"$exists": False}},
        all_but(1, 2, 4),
        edge=True,
    ),
    Case(
        "edge_with_metadata",
        {
            "metadata.system.mimetype": "image/*",
            "prediction.annotations.confidence": {"$gte": 0.9},
        },
        ids(1, 2),
        edge=True,
    ),
    # --- timestamps ----------------------------------------------------------
    Case("created_gte_date", {"created_at": {"$gte": "2024-03-01"}}, ids(7, 8, 9, 10, 11, 12, 13)),
    Case("created_lt", {"created_at": {"$lt": "2024-01-01T00:00:00Z"}}, ids(4)),
    Case("created_lte", {"created_at": {"$lte": "2024-01-01T00:00:00Z"}}, ids(4, 6)),
    Case("created_eq_other_offset", {"created_at": "2024-02-15T06:30:00Z"}, ids(3)),
    Case(
        "created_gt_with_offset",
        {"created_at": {"$gt": "2024-02-15T08:00:00+02:00"}},
        ids(3, 7, 8, 9, 10, 11, 12, 13),
    ),
    Case(
        "updated_gte",
        {"updated_at": {"$gte": "2024-03-01T12:00:00Z"}},
        ids(2, 7, 8, 9, 10, 11, 12, 13),
    ),
    Case(
        "created_in",
        {"created_at": {"$in": ["2024-01-01T00:00:00Z", "2023-12-31T23:59:59Z"]}},
        ids(4, 6),
    ),
    Case(
        "created_range_ne",
        {"created_at": {"$gte": "2024-01-01", "$lt": "2024-02-01", "$ne": "2024-01-10T10:00:00Z"}},
        ids(5, 6),
    ),
    # --- logic ---------------------------------------------------------------
    Case("and", {"$and": [{"dir": "/batch1"}, {"metadata.user.label": "cat"}]}, ids(1, 5, 11)),
    Case("or", {"$or": [{"name": "scan.pdf"}, {"metadata.user.score": {"$lt": 0}}]}, ids(4, 8)),
    Case(
        "and_of_or",
        {
            "$and": [
                {"$or": [{"dir": "/batch1/**"}, {"dir": "/video/**"}]},
                {"metadata.system.mimetype": "image/jpeg"},
            ]
        },
        ids(2, 9),
    ),
    Case(
        "or_of_and_of_or",
        {
            "$or": [
                {
                    "$and": [
                        {"metadata.system.size": {"$gte": 4096}},
                        {"metadata.system.mimetype": "image/*"},
                    ]
                },
                {"$and": [{"type": "dir"}, {"$or": [{"name": "batch1"}, {"name": "nope"}]}]},
            ]
        },
        ids(2, 6, 7, 10),
    ),
    Case(
        "keys_are_anded",
        {"dir": "/batch1", "hidden": False, "metadata.user.score": {"$gte": 0.9}},
        ids(1, 11),
    ),
    Case(
        "or_of_exists",
        {
            "$or": [
                {"metadata.user.count": {"$exists": True}},
                {"metadata.user.nested": {"$exists": True}},
            ]
        },
        ids(7, 8),
    ),
    Case("single_branch_or", {"$or": [{"dir": "/misc"}]}, ids(13)),
    Case(
        "logic_next_to_fields",
        {"metadata.system.mimetype": "image/*", "$or": [{"dir": "/batch10"}, {"dir": "/batch_1"}]},
        ids(10, 12),
    ),
]


@dataclass(frozen=True)
class InvalidCase:
    """A filter ``parse_filter`` must reject, with the path its ``DQLError`` names."""

    name: str
    filter: Any
    path: str
    max_depth: int = 10
    prediction: bool = False


def _nested_and(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"dir": "/"}
    for _ in range(levels):
        node = {"$and": [node]}
    return node


INVALID: list[InvalidCase] = [
    InvalidCase("root_is_list", [], ""),
    InvalidCase("root_is_string", "dir", ""),
    InvalidCase("root_is_null", None, ""),
    InvalidCase("empty_and", {"$and": []}, "/$and"),
    InvalidCase("or_not_a_list", {"$or": {}}, "/$or"),
    InvalidCase("and_element_not_object", {"$and": [{"dir": "/a"}, 5]}, "/$and/1"),
    InvalidCase("unknown_logical", {"$nor": [{"dir": "/"}]}, "/$nor"),
    InvalidCase("unknown_operator", {"dir": {"$regex": "x"}}, "/dir/$regex"),
    InvalidCase("in_not_list", {"metadata.user.x": {"$in": "a"}}, "/metadata.user.x/$in"),
    InvalidCase("nin_not_list", {"metadata.user.x": {"$nin": None}}, "/metadata.user.x/$nin"),
    InvalidCase("exists_not_bool", {"metadata.user.x": {"$exists": 1}}, "/metadata.user.x/$exists"),
    InvalidCase("gt_bool", {"metadata.user.x": {"$gt": True}}, "/metadata.user.x/$gt"),
    InvalidCase("gt_null", {"metadata.user.x": {"$gt": None}}, "/metadata.user.x/$gt"),
    InvalidCase("lte_list", {"metadata.user.x": {"$lte": [1]}}, "/metadata.user.x/$lte"),
    InvalidCase(
        "gt_object_nested_path",
        {"$and": [{"dir": "/a"}, {"metadata.user.x": {"$gt": {}}}]},
        "/$and/1/metadata.user.x/$gt",
    ),
    InvalidCase(
        "in_element_list", {"metadata.user.x": {"$in": [1, [2]]}}, "/metadata.user.x/$in/1"
    ),
    InvalidCase("eq_object", {"metadata.user.x": {"$eq": {"a": 1}}}, "/metadata.user.x/$eq"),
    InvalidCase("object_without_operator", {"metadata.user.x": {"a": 1}}, "/metadata.user.x/a"),
    InvalidCase(
        "operator_mixed_with_key", {"metadata.user.x": {"$gt": 1, "a": 1}}, "/metadata.user.x/a"
    ),
    InvalidCase("empty_operator_object", {"metadata.user.x": {}}, "/metadata.user.x"),
    InvalidCase("list_value", {"metadata.user.x": [1, 2]}, "/metadata.user.x"),
    InvalidCase("unknown_field", {"size": 5}, "/size"),
    InvalidCase("bare_metadata", {"metadata": 5}, "/metadata"),
    InvalidCase("segment_with_space", {"metadata.user.bad key": 1}, "/metadata.user.bad key"),
    InvalidCase("empty_segment", {"metadata.user..x": 1}, "/metadata.user..x"),
    InvalidCase("injection_in_path", {"metadata.user.x'--": 1}, "/metadata.user.x'--"),
    InvalidCase("column_sub_field", {"name.first": "a"}, "/name.first"),
    InvalidCase("hidden_string", {"hidden": "false"}, "/hidden"),
    InvalidCase("hidden_range", {"hidden": {"$gt": False}}, "/hidden/$gt"),
    InvalidCase("timestamp_not_iso", {"created_at": {"$gt": "yesterday"}}, "/created_at/$gt"),
    InvalidCase("timestamp_number", {"updated_at": {"$lt": 5}}, "/updated_at/$lt"),
    InvalidCase("timestamp_glob", {"created_at": "2024-*"}, "/created_at"),
    InvalidCase("text_column_number", {"name": 5}, "/name"),
    InvalidCase("text_column_range_number", {"name": {"$gt": 5}}, "/name/$gt"),
    InvalidCase("text_column_in_number", {"dir": {"$in": ["/a", 5]}}, "/dir/$in/1"),
    InvalidCase("nan", {"metadata.user.x": {"$gt": float("nan")}}, "/metadata.user.x/$gt"),
    InvalidCase(
        "nul_in_string", {"metadata.user.x": {"$in": ["a", "b\x00"]}}, "/metadata.user.x/$in/1"
    ),
    InvalidCase("lone_surrogate", {"name": {"$gt": "\ud800"}}, "/name/$gt"),
    InvalidCase("pointer_escapes_slash", {"a/b": 1}, "/a~1b"),
    InvalidCase(
        "too_deep",
        _nested_and(11),
        "/$and/0/$and/0/$and/0/$and/0/$and/0/$and/0/$and/0/$and/0/$and/0/$and/0/$and",
    ),
    InvalidCase("too_deep_custom_limit", _nested_and(3), "/$and/0/$and/0/$and", max_depth=2),
    InvalidCase("prediction_outside_edges", {"prediction.count": 1}, "/prediction.count"),
    InvalidCase(
        "prediction_inside_or_outside_edges",
        {"$or": [{"dir": "/"}, {"prediction.annotations.label": "x"}]},
        "/$or/1/prediction.annotations.label",
    ),
    InvalidCase(
        "prediction_unknown_field", {"prediction.score": 1}, "/prediction.score", prediction=True
    ),
    InvalidCase(
        "prediction_annotations_bare",
        {"prediction.annotations": 1},
        "/prediction.annotations",
        prediction=True,
    ),
    InvalidCase(
        "prediction_confidence_string",
        {"prediction.annotations.confidence": {"$gte": "high"}},
        "/prediction.annotations.confidence/$gte",
        prediction=True,
    ),
    InvalidCase(
        "prediction_label_number",
        {"prediction.annotations.label": 5},
        "/prediction.annotations.label",
        prediction=True,
    ),
    InvalidCase(
        "prediction_count_bool", {"prediction.count": True}, "/prediction.count", prediction=True
    ),
    InvalidCase(
        "prediction_label_in_number",
        {"prediction.annotations.label": {"$in": ["a", 1]}},
        "/prediction.annotations.label/$in/1",
        prediction=True,
    ),
    InvalidCase(
        "prediction_exists_not_bool",
        {"prediction.min_confidence": {"$exists": "yes"}},
        "/prediction.min_confidence/$exists",
        prediction=True,
    ),
]


@dataclass(frozen=True)
class SortCase:
    """A sort spec applied to the items a filter selects, with the expected id order."""

    name: str
    sort: Any
    filter: dict[str, Any] = field(default_factory=dict)
    expected: tuple[str, ...] = ()


def order(*numbers: int) -> tuple[str, ...]:
    """``order(2, 1)`` -> ``("it02", "it01")``."""
    return tuple(f"it{n:02d}" for n in numbers)


SORT_CASES: list[SortCase] = [
    SortCase(
        "name_asc_tiebreak_on_id",
        [{"field": "name", "order": "asc"}],
        {},
        order(6, 13, 1, 11, 7, 2, 9, 5, 3, 10, 8, 4, 12),
    ),
    SortCase(
        "metadata_number_desc",
        {"metadata.system.size": "desc"},
        {"metadata.system.mimetype": "image/*"},
        order(2, 10, 7, 1, 9, 11, 5, 12),
    ),
    SortCase(
        "missing_sorts_last",
        {"metadata.user.score": "asc"},
        {"dir": "/batch1/**"},
        order(2, 1, 11, 7, 5),
    ),
    SortCase(
        "timestamp_desc",
        [{"field": "created_at", "order": "descending"}],
        {"dataset_id": "ds1", "hidden": False, "type": "file"},
        order(13, 12, 10, 9, 8, 7, 3, 2, 1, 4),
    ),
    SortCase(
        "two_keys_code_point",
        [{"field": "dir"}, {"field": "name", "order": -1}],
        {"name": "*.png"},
        order(5, 1, 11, 7, 12),
    ),
    SortCase("no_sort_is_by_id", None, {"dir": "/batch1"}, order(1, 5, 11)),
]
