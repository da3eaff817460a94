"""Pure logic of model-serving: specs, adapters, input checks, Triton config validation,
archives, scaling and retry timing."""

from __future__ import annotations

import io
import math
import re
import tarfile
import zipfile
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pytest

from model_serving_service.adapters.triton_config import (
    backend_problems,
    parse_model_config,
    prepare_model_config,
    render_model_config,
    validate_model_config,
)
from model_serving_service.catalog import CATALOG
from model_serving_service.domain.archives import model_root, safe_member, version_folders
from model_serving_service.domain.errors import InvalidModelError, TooLargeError
from model_serving_service.domain.outputs import AdapterError, Geometry, adapt
from model_serving_service.domain.requests import (
    backoff_delays,
    execution_key,
    is_last_delivery,
    outcome_event_id,
    short_triton_reason,
)
from model_serving_service.domain.scaling import Scaling, default_concurrency, merge_scaling
from model_serving_service.domain.specs import ModelSpec, SpecOverrides, input_problem, parse_spec
from model_serving_service.domain.status import can_transition
from model_serving_service.usecases.archives import unpack_archive

GEO = Geometry(width=200, height=100, input_width=200, input_height=100)


def spec(**overrides: Any) -> ModelSpec:
    doc: dict[str, Any] = {
        "input": {"tensor": "IMAGE"},
        "adapter": {"type": "classification", "outputs": {"scores": "P"}},
        "labels": ["cat", "dog", "bird"],
    }
    doc.update(overrides)
    return parse_spec(doc)


# --------------------------------------------------------------------------- specs


def test_label_map_keys_must_be_model_labels() -> None:
    with pytest.raises(InvalidModelError, match=r"label_map keys \['cow'\]"):
        spec(label_map={"cow": "bovine"})


def test_image_input_needs_a_size() -> None:
    with pytest.raises(InvalidModelError, match=r"needs input\.width and input\.height"):
        spec(input={"tensor": "X", "kind": "image"})


@pytest.mark.parametrize(
    ("adapter", "message"),
    [
        ({"type": "boxes", "outputs": {"boxes": "B"}}, r"needs outputs for \['scores'\]"),
        (
            {"type": "classification", "outputs": {"scores": "S", "boxes": "B"}},
            r"has no output roles \['boxes'\]",
        ),
        ({"type": "text", "outputs": {"texts": "T", "scores": "S"}}, "'polygons' or a 'boxes'"),
    ],
)
def test_adapter_roles_are_checked(adapter: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidModelError, match=message):
        spec(adapter=adapter)


def test_overrides_are_validated_against_the_spec() -> None:
    base = spec()
    changed = SpecOverrides(label_map={"dog": "puppy"}, confidence_threshold=0.4).apply(base)
    assert changed.label_map == {"dog": "puppy"}
    assert changed.confidence_threshold == 0.4
    with pytest.raises(InvalidModelError, match="label_map"):
        SpecOverrides(label_map={"fish": "x"}).apply(base)


# --------------------------------------------------------------------------- adapters


def test_classification_applies_label_map_threshold_and_top_k() -> None:
    s = spec(label_map={"dog": "puppy", "bird": None}, confidence_threshold=0.2)
    scores = np.array([[0.1, 0.7, 0.2], [0.05, 0.15, 0.8], [0.5, 0.3, 0.2]], dtype=np.float32)
    out = adapt(s, {"scores": scores}, [GEO] * 3)
    assert [[(a.label, round(a.confidence, 2)) for a in item] for item in out] == [
        [("puppy", 0.7)],
        [],  # bird is dropped by the label map
        [("cat", 0.5)],
    ]
    assert out[0][0].type == "classification"
    assert out[0][0].coordinates is None

    top2 = spec(adapter={"type": "classification", "outputs": {"scores": "P"}, "top_k": 2})
    both = adapt(top2, {"scores": scores[:1]}, [GEO])
    assert [a.label for a in both[0]] == ["dog", "bird"]


def test_classification_softmax_turns_logits_into_confidences() -> None:
    s = spec(adapter={"type": "classification", "outputs": {"scores": "P"}, "softmax": True})
    (item,) = adapt(s, {"scores": np.array([[0.0, math.log(3.0), 0.0]])}, [GEO])
    assert item[0].label == "dog"
    assert item[0].confidence == pytest.approx(0.6)


def test_classification_width_must_match_labels() -> None:
    with pytest.raises(AdapterError, match=r"expected \[1, 3\]"):
        adapt(spec(), {"scores": np.zeros((1, 4))}, [GEO])
    with pytest.raises(AdapterError, match="batch dimension 2"):
        adapt(spec(), {"scores": np.zeros((1, 3))}, [GEO, GEO])


def boxes_spec(**adapter: Any) -> ModelSpec:
    return spec(
        adapter={"type": "boxes", "outputs": {"boxes": "B", "scores": "S", "classes": "C"}}
        | adapter,
        labels=["face", "hand"],
        confidence_threshold=0.3,
    )


def test_boxes_skip_padding_and_low_scores_and_take_class_labels() -> None:
    boxes = np.array([[[10, 20, 50, 60], [0, 0, 1, 1], [5, 5, 9, 9]]], dtype=np.float32)
    scores = np.array([[0.9, -1.0, 0.1]], dtype=np.float32)
    classes = np.array([[1, 0, 0]], dtype=np.int32)
    (item,) = adapt(boxes_spec(), {"boxes": boxes, "scores": scores, "classes": classes}, [GEO])
    assert len(item) == 1
    assert item[0].type == "box"
    assert item[0].label == "hand"
    assert item[0].coordinates == [[10.0, 20.0], [50.0, 60.0]]


def test_boxes_xywh_normalized_and_resized_coordinates() -> None:
    scores = np.array([[0.9]], dtype=np.float32)
    classes = np.array([[0]])
    xywh = boxes_spec(box_format="xywh")
    (item,) = adapt(
        xywh, {"boxes": np.array([[[10, 20, 30, 40]]]), "scores": scores, "classes": classes}, [GEO]
    )
    assert item[0].coordinates == [[10.0, 20.0], [40.0, 60.0]]

    normalized = boxes_spec(coordinates="normalized")
    (item,) = adapt(
        normalized,
        {"boxes": np.array([[[0.1, 0.2, 0.5, 1.0]]]), "scores": scores, "classes": classes},
        [GEO],
    )
    assert item[0].coordinates == [[20.0, 20.0], [100.0, 100.0]]

    # The model saw a 100x50 resize of the 200x100 image: coordinates scale back.
    resized = Geometry(width=200, height=100, input_width=100, input_height=50)
    (item,) = adapt(
        boxes_spec(),
        {"boxes": np.array([[[10, 10, 20, 20]]]), "scores": scores, "classes": classes},
        [resized],
    )
    assert item[0].coordinates == [[20.0, 20.0], [40.0, 40.0]]


def test_box_class_index_outside_labels_is_an_error() -> None:
    with pytest.raises(AdapterError, match="class index 5"):
        adapt(
            boxes_spec(),
            {
                "boxes": np.zeros((1, 1, 4)),
                "scores": np.array([[0.9]]),
                "classes": np.array([[5]]),
            },
            [GEO],
        )


def test_polygons_and_text() -> None:
    poly = spec(
        adapter={"type": "polygons", "outputs": {"polygons": "P", "scores": "S"}},
        labels=["lake"],
    )
    (item,) = adapt(
        poly,
        {"polygons": np.array([[[[0, 0], [10, 0], [10, 10]]]]), "scores": np.array([[0.8]])},
        [GEO],
    )
    assert item[0].type == "polygon"
    assert item[0].coordinates == [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]]

    text = spec(
        adapter={"type": "text", "outputs": {"boxes": "B", "texts": "T", "scores": "S"}},
        labels=["text"],
        label_map={"text": "line"},
    )
    texts = np.array([[b"hello", b""]], dtype=object)
    (item,) = adapt(
        text,
        {
            "boxes": np.array([[[1, 2, 3, 4], [0, 0, 0, 0]]]),
            "texts": texts,
            "scores": np.array([[0.7, -1]]),
        },
        [GEO],
    )
    assert len(item) == 1
    assert (item[0].type, item[0].label, item[0].text) == ("text", "line", "hello")
    assert item[0].coordinates == [[1.0, 2.0], [3.0, 2.0], [3.0, 4.0], [1.0, 4.0]]


def test_coordinates_are_clipped_to_the_image() -> None:
    (item,) = adapt(
        boxes_spec(),
        {
            "boxes": np.array([[[-5, -5, 500, 500]]]),
            "scores": np.array([[0.9]]),
            "classes": np.array([[0]]),
        },
        [GEO],
    )
    assert item[0].coordinates == [[0.0, 0.0], [200.0, 100.0]]


# --------------------------------------------------------------------------- inputs


@pytest.mark.parametrize(
    ("input_type", "mimetype", "fits"),
    [
        ("image", "image/png", True),
        ("image", "IMAGE/JPEG", True),
        ("image", "text/plain", False),
        ("image", None, True),
        ("text", "text/plain", True),
        ("text", "application/json", True),
        ("text", "image/png", False),
    ],
)
def test_input_type_check(input_type: Any, mimetype: str | None, fits: bool) -> None:
    problem = input_problem(input_type, mimetype)
    assert (problem is None) is fits
    if problem:
        assert mimetype is not None
        assert mimetype.lower() in problem


# --------------------------------------------------------------------------- Triton config

CONFIG = """
name: "whatever"
backend: "python"
max_batch_size: 8
input [ { name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "P" data_type: TYPE_FP32 dims: [ 3 ] } ]
"""


def test_a_fitting_config_has_no_problems_and_is_renamed() -> None:
    config = parse_model_config(CONFIG)
    assert validate_model_config(config, spec(max_batch_size=8)) == []
    renamed = prepare_model_config(config, "mdl_x")
    assert 'name: "mdl_x"' in render_model_config(renamed)
    assert config.name == "whatever"


def test_unparsable_config_says_where() -> None:
    with pytest.raises(InvalidModelError, match=r"config\.pbtxt does not parse: 1:"):
        parse_model_config("name: x")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('backend: "python"', ""), "neither a backend nor a platform"),
        (("max_batch_size: 8", "max_batch_size: 0"), "max_batch_size must be >= 1"),
        (('name: "IMAGE"', 'name: "PIXELS"'), "input tensor 'IMAGE' is not declared"),
        (("TYPE_STRING", "TYPE_FP32"), "needs TYPE_STRING"),
        (("dims: [ 1 ]", "dims: [ 2 ]"), r"has dims \[2\]"),
        (('name: "P"', 'name: "Q"'), "'scores' -> 'P' is not declared"),
        (("dims: [ 3 ]", "dims: [ 4 ]"), r"classification needs \[3\]"),
    ],
)
def test_config_problems_say_what_is_wrong(change: tuple[str, str], message: str) -> None:
    config = parse_model_config(CONFIG.replace(*change))
    problems = validate_model_config(config, spec())
    assert any(re.search(message, p) for p in problems), problems


def test_spec_batch_above_the_model_and_image_inputs() -> None:
    assert any(
        "exceeds" in p
        for p in validate_model_config(parse_model_config(CONFIG), spec(max_batch_size=9))
    )
    image_config = parse_model_config(
        CONFIG.replace("TYPE_STRING", "TYPE_FP32").replace("dims: [ 1 ]", "dims: [ 3, 32, -1 ]")
    )
    image_spec = spec(
        input={"tensor": "IMAGE", "kind": "image", "width": 48, "height": 32, "layout": "CHW"}
    )
    assert validate_model_config(image_config, image_spec) == []


def test_catalog_configs_fit_their_specs() -> None:
    for entry in CATALOG.values():
        config = entry.triton_config("mdl_test", entry.spec.max_batch_size)
        assert validate_model_config(config, entry.spec) == [], entry.name
        assert entry.model_file.is_file()
        files = [PurePosixPath("1/model.py")]
        assert backend_problems(config, files) == []


# --------------------------------------------------------------------------- archives


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("m/config.pbtxt", "m/config.pbtxt"),
        ("./m/1/model.py", "m/1/model.py"),
        ("../etc/passwd", None),
        ("/abs/path", None),
        ("a/../../b", None),
    ],
)
def test_safe_member(name: str, safe: str | None) -> None:
    result = safe_member(name)
    assert (str(result) if result else None) == safe


def test_model_root_and_versions() -> None:
    paths = [PurePosixPath(p) for p in ("m/config.pbtxt", "m/1/model.py", "m/2/model.py", "m/x")]
    assert model_root(paths) == PurePosixPath("m")
    assert version_folders([PurePosixPath(p) for p in ("1/model.py", "2/a", "labels.txt")]) == [
        1,
        2,
    ]
    with pytest.raises(InvalidModelError, match=r"exactly one config\.pbtxt"):
        model_root([PurePosixPath("a/config.pbtxt"), PurePosixPath("b/config.pbtxt")])
    config = parse_model_config(CONFIG)
    assert backend_problems(config, [PurePosixPath("labels.txt")]) == [
        "the model has no numeric version folder (e.g. 1/ with the model file)"
    ]
    assert "lack model.py" in backend_problems(config, [PurePosixPath("1/weights.bin")])[0]


def _tar(entries: dict[str, bytes], link: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tf.addfile(info)
    return buffer.getvalue()


def test_unpack_tar_and_zip() -> None:
    entries = {"m/config.pbtxt": b"x", "m/1/model.py": b"y"}
    assert unpack_archive(_tar(entries), 1000) == {PurePosixPath(k): v for k, v in entries.items()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    assert unpack_archive(buffer.getvalue(), 1000) == {
        PurePosixPath(k): v for k, v in entries.items()
    }


def test_unpack_refuses_traversal_links_bombs_and_garbage() -> None:
    with pytest.raises(InvalidModelError, match="unsafe path"):
        unpack_archive(_tar({"../evil.py": b"x"}), 1000)
    with pytest.raises(InvalidModelError, match="not a regular file"):
        unpack_archive(_tar({"m/config.pbtxt": b"x"}, link="m/1/model.py"), 1000)
    with pytest.raises(TooLargeError):
        unpack_archive(_tar({"m/config.pbtxt": b"x" * 600, "m/1/model.py": b"y" * 600}), 1000)
    with pytest.raises(InvalidModelError, match="neither a zip nor a tar"):
        unpack_archive(b"definitely not an archive", 1000)


# --------------------------------------------------------------------------- scaling


def test_scaling_defaults_and_bounds() -> None:
    assert Scaling().model_dump() == {
        "min_replicas": 0,
        "max_replicas": 1,
        "queue_per_replica": 10,
        "cooldown_seconds": 60.0,
        "concurrency": 4,
        "drain_seconds": 30.0,
        "instance_type": "cpu-small",
    }
    with pytest.raises(InvalidModelError, match="exceeds max_replicas"):
        merge_scaling(Scaling(), {"min_replicas": 3})
    assert merge_scaling(Scaling(), {"max_replicas": 4, "min_replicas": 2}).min_replicas == 2
    with pytest.raises(InvalidModelError, match="instance_type"):
        merge_scaling(Scaling(), {"instance_type": "GPU Large!"})
    assert default_concurrency(32) == 64
    assert default_concurrency(1) == 2


def test_status_transitions() -> None:
    assert can_transition("deploying", "ready")
    assert can_transition("failed", "ready")
    assert can_transition("ready", "undeploying")
    assert not can_transition("undeployed", "ready")
    assert not can_transition("undeploying", "ready")


# --------------------------------------------------------------------------- workers


def test_retry_timing_and_delivery_limit() -> None:
    assert backoff_delays(4, 0.2) == [0.2, 0.4, 0.8]
    assert backoff_delays(10, 1.0, cap=3.0)[-1] == 3.0
    assert backoff_delays(1, 0.2) == []
    assert not is_last_delivery(None, 2)
    assert not is_last_delivery(1, 2)
    assert is_last_delivery(2, 2)


def test_outcome_ids_are_stable_per_request_key() -> None:
    key = execution_key("exe_1", 1)
    assert key == "exe_1#1"
    assert outcome_event_id(key) == outcome_event_id("exe_1#1")
    assert outcome_event_id(key) != outcome_event_id(execution_key("exe_1", 2))


def test_triton_reason_drops_the_traceback() -> None:
    text = (
        "[400] load failed for model 'm': version 1 is at UNAVAILABLE state: Internal: "
        "RuntimeError: weights missing\n\nAt:\n  /x/model.py(3): initialize\n"
    )
    assert short_triton_reason(text) == (
        "[400] load failed for model 'm': version 1 is at UNAVAILABLE state: Internal: "
        "RuntimeError: weights missing"
    )
