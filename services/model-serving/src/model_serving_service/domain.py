"""Pure logic of model-serving: model specs, output adapters, input checks, Triton model
configuration validation, scaling settings, retry timing. No I/O here.

A *model spec* is everything the worker needs besides the Triton model itself: which
input tensor receives the item (the encoded file bytes, or decoded pixels resized to a
fixed size), which output tensors mean what (the *adapter*), the labels, the label map,
the confidence threshold, the batch size and the timeout.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

import numpy as np
from google.protobuf import text_format  # type: ignore[import-untyped]
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from tritonclient.grpc import model_config_pb2

from common.contracts import PredictedAnnotation
from common.errors import ServiceError

InputType = Literal["image", "text"]
AdapterType = Literal["classification", "boxes", "polygons", "text"]
ServiceStatus = Literal["deploying", "ready", "failed", "undeploying", "undeployed"]

MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ModelServingError(ServiceError):
    """A request that cannot be honoured; ``status`` is the HTTP status to answer with."""

    status = 400


class NotFoundError(ModelServingError):
    """The thing does not exist (or belongs to another project)."""

    status = 404


class ConflictError(ModelServingError):
    """The request conflicts with the current state."""

    status = 409


class InvalidModelError(ModelServingError):
    """A model (catalog install options or BYOM upload) failed validation."""

    status = 422

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)

    def body(self) -> dict[str, object]:
        """The message and each problem on its own."""
        return {**super().body(), "problems": self.problems}


class TooLargeError(ModelServingError):
    """An upload above the configured limit."""

    status = 413


# --------------------------------------------------------------------------- specs


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class InputSpec(_Frozen):
    """How an item becomes the model's input tensor."""

    tensor: str = Field(min_length=1)
    """Name of the input tensor in ``config.pbtxt``."""
    kind: Literal["encoded", "image"] = "encoded"
    """``encoded``: the file's bytes as one TYPE_STRING element (the model decodes them).
    ``image``: pixels decoded by the worker, resized to ``width`` x ``height``."""
    width: int | None = Field(default=None, ge=1, le=8192)
    """Model input width (``image`` only)."""
    height: int | None = Field(default=None, ge=1, le=8192)
    """Model input height (``image`` only)."""
    color: Literal["RGB", "L"] = "RGB"
    """Channels: RGB (3) or grayscale (1)."""
    layout: Literal["HWC", "CHW"] = "HWC"
    """Tensor layout without the batch dimension."""
    dtype: Literal["FP32", "UINT8"] = "FP32"
    """Tensor element type."""
    scale: float = 1.0 / 255.0
    """Pixel values (0..255) are multiplied by this for FP32 tensors."""

    @model_validator(mode="after")
    def _image_needs_size(self) -> InputSpec:
        if self.kind == "image" and (self.width is None or self.height is None):
            raise ValueError("input.kind 'image' needs input.width and input.height")
        return self

    @property
    def channels(self) -> int:
        """Number of channels of an ``image`` input."""
        return 3 if self.color == "RGB" else 1

    def tensor_dims(self) -> list[int]:
        """Dimensions of one item's tensor (without the batch dimension)."""
        if self.kind == "encoded":
            return [1]
        assert self.width is not None
        assert self.height is not None
        if self.layout == "HWC":
            return [self.height, self.width, self.channels]
        return [self.channels, self.height, self.width]


ADAPTER_ROLES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # type: (required roles, optional roles)
    "classification": (frozenset({"scores"}), frozenset()),
    "boxes": (frozenset({"boxes", "scores"}), frozenset({"classes"})),
    "polygons": (frozenset({"polygons", "scores"}), frozenset({"classes"})),
    "text": (frozenset({"texts", "scores"}), frozenset({"polygons", "boxes", "classes"})),
}
"""Which output roles each adapter reads; ``outputs`` maps a role to a tensor name."""


class AdapterSpec(_Frozen):
    """How the model's output tensors become annotations.

    Tensor conventions (first dimension is always the batch):
    - classification: ``scores`` [N, C], one score per label.
    - boxes: ``boxes`` [N, K, 4] and ``scores`` [N, K], optional ``classes`` [N, K]
      (label indices); rows with a negative or NaN score are padding.
    - polygons: ``polygons`` [N, K, P, 2] and ``scores`` [N, K], optional ``classes``.
    - text: ``texts`` [N, K] (TYPE_STRING), ``scores`` [N, K] and ``polygons``
      [N, K, P, 2] or ``boxes`` [N, K, 4].
    """

    type: AdapterType
    """Which annotation kind the model produces."""
    outputs: dict[str, str]
    """Role (``scores``, ``boxes``, ``polygons``, ``texts``, ``classes``) -> output tensor."""
    coordinates: Literal["pixels", "normalized"] = "pixels"
    """Pixel coordinates of the model input, or 0..1 fractions of its width/height."""
    box_format: Literal["xyxy", "xywh"] = "xyxy"
    """``[x1, y1, x2, y2]`` or ``[x, y, width, height]``."""
    softmax: bool = False
    """Classification scores are logits: apply a softmax first."""
    top_k: int = Field(default=1, ge=1, le=100)
    """Classification: how many classes to report per item."""

    @model_validator(mode="after")
    def _roles(self) -> AdapterSpec:
        required, optional = ADAPTER_ROLES[self.type]
        given = set(self.outputs)
        missing = required - given
        unknown = given - required - optional
        problems = []
        if missing:
            problems.append(f"adapter '{self.type}' needs outputs for {sorted(missing)}")
        if unknown:
            problems.append(
                f"adapter '{self.type}' has no output roles {sorted(unknown)} "
                f"(known: {sorted(required | optional)})"
            )
        if self.type == "text" and not given & {"polygons", "boxes"}:
            problems.append("adapter 'text' needs a 'polygons' or a 'boxes' output")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ModelSpec(_Frozen):
    """Everything a worker needs to run one model (stored with the model)."""

    input_type: InputType = "image"
    """What items the model accepts; others fail with a reason before Triton sees them."""
    input: InputSpec
    """How an item becomes the input tensor."""
    adapter: AdapterSpec
    """How outputs become annotations."""
    labels: list[str] = Field(min_length=1)
    """Class names, in the model's index order."""
    label_map: dict[str, str | None] = Field(default_factory=dict)
    """Model label -> label written on annotations; ``null`` drops that class."""
    confidence_threshold: float = Field(default=0.0, ge=0.0, le=1.0)
    """Annotations below this confidence are dropped."""
    max_batch_size: int = Field(default=1, ge=1, le=1024)
    """Most items per Triton call."""
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    """Longest one request may take in a worker, waiting for a model load included."""

    @model_validator(mode="after")
    def _labels_map(self) -> ModelSpec:
        unknown = sorted(set(self.label_map) - set(self.labels))
        if unknown:
            raise ValueError(f"label_map keys {unknown} are not model labels {self.labels}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        return self

    def output_label(self, raw: str) -> str | None:
        """The label an annotation gets for the model's ``raw`` label (None: dropped)."""
        if raw in self.label_map:
            return self.label_map[raw]
        return raw


class SpecOverrides(_Frozen):
    """What a project may change when installing a catalog model."""

    label_map: dict[str, str | None] | None = None
    confidence_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    max_batch_size: int | None = Field(default=None, ge=1, le=1024)
    timeout_seconds: float | None = Field(default=None, gt=0, le=3600)

    def apply(self, spec: ModelSpec) -> ModelSpec:
        """``spec`` with these overrides (validated again)."""
        changes = self.model_dump(exclude_none=True)
        try:
            return ModelSpec.model_validate({**spec.model_dump(), **changes})
        except ValueError as exc:
            raise InvalidModelError(_validation_problems(exc)) from exc


def _validation_problems(exc: ValueError) -> list[str]:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        out = []
        for err in errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            out.append(f"{loc}: {msg}" if loc else msg)
        return out
    return [str(exc)]


def parse_spec(raw: Mapping[str, Any]) -> ModelSpec:
    """Validate a spec document; problems become an :class:`InvalidModelError`."""
    try:
        return ModelSpec.model_validate(raw)
    except ValueError as exc:
        raise InvalidModelError(_validation_problems(exc)) from exc


# --------------------------------------------------------------------------- scaling


class Scaling(_Frozen):
    """Scaling settings of a model service (see ARCHITECTURE.md, Scaling from zero)."""

    min_replicas: int = Field(default=0, ge=0, le=100)
    max_replicas: int = Field(default=1, ge=0, le=100)
    queue_per_replica: int = Field(default=10, ge=1, le=100_000)
    cooldown_seconds: float = Field(default=60.0, ge=0, le=86_400)
    concurrency: int = Field(default=4, ge=1, le=1024)
    drain_seconds: float = Field(default=30.0, ge=0, le=3600)
    instance_type: str = Field(default="cpu-small", min_length=1, max_length=64)

    @model_validator(mode="after")
    def _bounds(self) -> Scaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})"
            )
        return self

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", value):
            raise ValueError("instance_type: lowercase letters, digits, '.' and '-'")
        return value


def default_concurrency(max_batch_size: int) -> int:
    """Prefetch that lets one batch fill while the previous one runs."""
    return max(2, min(2 * max_batch_size, 256))


def merge_scaling(current: Scaling, changes: Mapping[str, Any]) -> Scaling:
    """``current`` with ``changes`` applied, validated as a whole."""
    try:
        return Scaling.model_validate({**current.model_dump(), **changes})
    except ValueError as exc:
        raise InvalidModelError(_validation_problems(exc)) from exc


TRANSITIONS: dict[str, frozenset[str]] = {
    "deploying": frozenset({"ready", "failed", "undeploying"}),
    "ready": frozenset({"failed", "undeploying"}),
    "failed": frozenset({"ready", "undeploying"}),
    "undeploying": frozenset({"undeployed"}),
    "undeployed": frozenset(),
}


def can_transition(current: str, new: str) -> bool:
    """Whether a service may move from ``current`` to ``new`` status."""
    return new in TRANSITIONS.get(current, frozenset())


# --------------------------------------------------------------------------- inputs


def input_problem(input_type: InputType, mimetype: str | None) -> str | None:
    """Why an item of ``mimetype`` cannot go to a model taking ``input_type`` (None: fits)."""
    if not mimetype:
        return None  # unknown: the decode check decides
    mimetype = mimetype.lower()
    if input_type == "image" and not mimetype.startswith("image/"):
        return f"item is {mimetype}, but the model takes images (image/*)"
    if input_type == "text" and not (
        mimetype.startswith("text/") or mimetype in {"application/json", "application/xml"}
    ):
        return f"item is {mimetype}, but the model takes text (text/*)"
    return None


@dataclass(frozen=True)
class Geometry:
    """Size of the original image and of the tensor the model saw (for coordinates)."""

    width: int
    height: int
    input_width: int
    input_height: int


# --------------------------------------------------------------------------- adapters


class AdapterError(Exception):
    """The model's outputs do not have the shape its adapter expects."""


def _softmax(x: NDArray[Any]) -> NDArray[Any]:
    shifted = x - np.max(x, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    result: NDArray[Any] = exp / np.sum(exp, axis=-1, keepdims=True)
    return result


def _confidence(value: float) -> float:
    return float(min(1.0, max(0.0, value)))


def _decode_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _scale_points(points: NDArray[Any], spec: AdapterSpec, geo: Geometry) -> list[list[float]]:
    """Points [P, 2] in model coordinates -> original image pixels, rounded."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if spec.coordinates == "normalized":
        sx, sy = float(geo.width), float(geo.height)
    else:
        sx = geo.width / geo.input_width if geo.input_width else 1.0
        sy = geo.height / geo.input_height if geo.input_height else 1.0
    out = []
    for x, y in pts:
        out.append(
            [
                round(min(max(x * sx, 0.0), float(geo.width)), 2),
                round(min(max(y * sy, 0.0), float(geo.height)), 2),
            ]
        )
    return out


def _box_points(box: NDArray[Any], spec: AdapterSpec) -> NDArray[Any]:
    x1, y1, a, b = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    x2, y2 = (x1 + a, y1 + b) if spec.box_format == "xywh" else (a, b)
    return np.array([[min(x1, x2), min(y1, y2)], [max(x1, x2), max(y1, y2)]])


def _item_rows(outputs: Mapping[str, NDArray[Any]], role: str, batch: int) -> NDArray[Any]:
    try:
        array = outputs[role]
    except KeyError as exc:
        raise AdapterError(f"output for role {role!r} is missing") from exc
    if array.ndim == 0 or array.shape[0] != batch:
        raise AdapterError(
            f"output {role!r} has shape {list(array.shape)}; expected batch dimension {batch}"
        )
    return array


def _label_at(spec: ModelSpec, classes: NDArray[Any] | None, i: int, k: int) -> str:
    if classes is None:
        return spec.labels[0]
    index = int(np.asarray(classes[i]).reshape(-1)[k])
    if not 0 <= index < len(spec.labels):
        raise AdapterError(f"class index {index} is outside the {len(spec.labels)} labels")
    return spec.labels[index]


def adapt(
    spec: ModelSpec, outputs: Mapping[str, NDArray[Any]], geometries: Sequence[Geometry]
) -> list[list[PredictedAnnotation]]:
    """Turn one batch of outputs (by role) into annotations per item.

    The label map and the confidence threshold are applied here; padding rows (negative
    or NaN scores) are skipped. Raises :class:`AdapterError` on unexpected shapes.
    """
    batch = len(geometries)
    adapter = spec.adapter
    result: list[list[PredictedAnnotation]] = []
    scores = _item_rows(outputs, "scores", batch).astype(np.float64)
    if adapter.type == "classification":
        if scores.ndim != 2 or scores.shape[1] != len(spec.labels):
            raise AdapterError(
                f"classification scores have shape {list(scores.shape)}; expected "
                f"[{batch}, {len(spec.labels)}] (one score per label)"
            )
        if adapter.softmax:
            scores = _softmax(scores)
        for i in range(batch):
            row = scores[i]
            found: list[PredictedAnnotation] = []
            for index in np.argsort(-row, kind="stable")[: adapter.top_k]:
                confidence = float(row[index])
                label = spec.output_label(spec.labels[int(index)])
                if label is None or math.isnan(confidence):
                    continue
                if confidence < spec.confidence_threshold:
                    continue
                found.append(
                    PredictedAnnotation(
                        type="classification", label=label, confidence=_confidence(confidence)
                    )
                )
            result.append(found)
        return result

    if scores.ndim != 2:
        raise AdapterError(f"scores have shape {list(scores.shape)}; expected [N, K]")
    classes = _item_rows(outputs, "classes", batch) if "classes" in adapter.outputs else None
    if adapter.type == "boxes":
        geometry = _item_rows(outputs, "boxes", batch)
        if geometry.ndim != 3 or geometry.shape[2] != 4 or geometry.shape[1] != scores.shape[1]:
            raise AdapterError(f"boxes have shape {list(geometry.shape)}; expected [N, K, 4]")
    elif "polygons" in adapter.outputs:
        geometry = _item_rows(outputs, "polygons", batch)
        if geometry.ndim != 4 or geometry.shape[3] != 2 or geometry.shape[1] != scores.shape[1]:
            raise AdapterError(f"polygons have shape {list(geometry.shape)}; expected [N, K, P, 2]")
    else:
        geometry = _item_rows(outputs, "boxes", batch)
        if geometry.ndim != 3 or geometry.shape[2] != 4 or geometry.shape[1] != scores.shape[1]:
            raise AdapterError(f"boxes have shape {list(geometry.shape)}; expected [N, K, 4]")
    texts = _item_rows(outputs, "texts", batch) if adapter.type == "text" else None
    if texts is not None and (texts.ndim != 2 or texts.shape[1] != scores.shape[1]):
        raise AdapterError(f"texts have shape {list(texts.shape)}; expected [N, K]")

    for i, geo in enumerate(geometries):
        found = []
        for k in range(scores.shape[1]):
            confidence = float(scores[i, k])
            if math.isnan(confidence) or confidence < 0:
                continue  # padding
            if confidence < spec.confidence_threshold:
                continue
            label = spec.output_label(_label_at(spec, classes, i, k))
            if label is None:
                continue
            shape = geometry[i, k]
            if geometry.ndim == 3:  # boxes
                box = _box_points(shape, adapter)
                points = _scale_points(box, adapter, geo)
                if adapter.type == "text":
                    (x1, y1), (x2, y2) = points
                    points = [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]
            else:
                points = _scale_points(shape, adapter, geo)
            annotation_type: Literal["box", "polygon", "text"] = (
                "box"
                if adapter.type == "boxes"
                else "polygon"
                if adapter.type == "polygons"
                else "text"
            )
            found.append(
                PredictedAnnotation(
                    type=annotation_type,
                    label=label,
                    coordinates=points,
                    confidence=_confidence(confidence),
                    text=_decode_text(texts[i, k]) if texts is not None else None,
                )
            )
        result.append(found)
    return result


# --------------------------------------------------------------------------- Triton config


TRITON_DTYPES_FOR_INPUT = {
    "encoded": {"TYPE_STRING"},
    "FP32": {"TYPE_FP32"},
    "UINT8": {"TYPE_UINT8"},
}


def parse_model_config(text: str) -> model_config_pb2.ModelConfig:
    """Parse ``config.pbtxt`` (protobuf text format) into Triton's ``ModelConfig``."""
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise InvalidModelError([f"config.pbtxt does not parse: {exc}"]) from exc


def render_model_config(config: model_config_pb2.ModelConfig) -> str:
    """Serialise a ``ModelConfig`` back to protobuf text format."""
    text: str = text_format.MessageToString(config)
    return text


def dtype_name(value: int) -> str:
    """``TYPE_FP32`` for Triton's data type enum value."""
    name: str = model_config_pb2.DataType.Name(value)
    return name


def _dims_match(declared: Sequence[int], expected: Sequence[int]) -> bool:
    if len(declared) != len(expected):
        return False
    return all(d == -1 or d == e for d, e in zip(declared, expected, strict=True))


def validate_model_config(config: model_config_pb2.ModelConfig, spec: ModelSpec) -> list[str]:
    """Problems between a Triton model configuration and the spec that will drive it.

    Empty when the model can be deployed: backend or platform named, batching on, the
    spec's input tensor declared with a fitting type and shape, every adapter output
    declared, classification outputs as wide as the labels.
    """
    problems: list[str] = []
    if not config.backend and not config.platform:
        problems.append("config.pbtxt names neither a backend nor a platform")
    if config.max_batch_size < 1:
        problems.append("config.pbtxt max_batch_size must be >= 1: workers send a batch dimension")
    elif spec.max_batch_size > config.max_batch_size:
        problems.append(
            f"max_batch_size {spec.max_batch_size} exceeds the model's "
            f"max_batch_size {config.max_batch_size}"
        )
    inputs = {i.name: i for i in config.input}
    declared = inputs.get(spec.input.tensor)
    if declared is None:
        problems.append(
            f"input tensor {spec.input.tensor!r} is not declared in config.pbtxt "
            f"(declared: {sorted(inputs)})"
        )
    else:
        wanted = TRITON_DTYPES_FOR_INPUT[
            "encoded" if spec.input.kind == "encoded" else spec.input.dtype
        ]
        got = dtype_name(declared.data_type)
        if got not in wanted:
            problems.append(
                f"input {declared.name!r} is {got}; input kind '{spec.input.kind}' needs "
                f"{' or '.join(sorted(wanted))}"
            )
        dims = list(declared.reshape.shape) if declared.HasField("reshape") else []
        dims = list(declared.dims) or dims
        if not _dims_match(dims, spec.input.tensor_dims()):
            problems.append(
                f"input {declared.name!r} has dims {dims}; the spec sends "
                f"{spec.input.tensor_dims()} per item"
            )
        extra = sorted(set(inputs) - {spec.input.tensor} - _optional_inputs(config))
        if extra:
            problems.append(f"inputs {extra} would receive nothing (only one input is fed)")
    outputs = {o.name: o for o in config.output}
    for role, tensor in sorted(spec.adapter.outputs.items()):
        out = outputs.get(tensor)
        if out is None:
            problems.append(
                f"adapter output {role!r} -> {tensor!r} is not declared in config.pbtxt "
                f"(declared: {sorted(outputs)})"
            )
            continue
        if role == "texts" and dtype_name(out.data_type) != "TYPE_STRING":
            problems.append(f"output {tensor!r} (texts) must be TYPE_STRING")
        if role == "scores" and spec.adapter.type == "classification":
            dims = list(out.dims)
            if len(dims) != 1 or (dims[0] != -1 and dims[0] != len(spec.labels)):
                problems.append(
                    f"output {tensor!r} has dims {dims}; classification needs "
                    f"[{len(spec.labels)}] (one score per label, labels: {len(spec.labels)})"
                )
    return problems


def _optional_inputs(config: model_config_pb2.ModelConfig) -> set[str]:
    return {i.name for i in config.input if i.optional}


def prepare_model_config(
    config: model_config_pb2.ModelConfig, triton_name: str
) -> model_config_pb2.ModelConfig:
    """A copy named ``triton_name`` (Triton wants the name to equal the directory name)."""
    out = model_config_pb2.ModelConfig()
    out.CopyFrom(config)
    out.name = triton_name
    return out


# --------------------------------------------------------------------------- archives


def safe_member(name: str) -> PurePosixPath | None:
    """A relative archive path without ``..`` or absolute parts; None for unsafe names."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or any(part in {"..", ""} for part in path.parts):
        return None
    parts = [p for p in path.parts if p != "."]
    if not parts:
        return None
    return PurePosixPath(*parts)


def model_root(paths: Iterable[PurePosixPath]) -> PurePosixPath:
    """The folder of an archive holding ``config.pbtxt``: the root or one top folder."""
    configs = [p for p in paths if p.name == "config.pbtxt" and len(p.parts) <= 2]
    if len(configs) != 1:
        found = ", ".join(sorted(str(c) for c in configs)) or "none"
        raise InvalidModelError(
            [
                f"the archive must hold exactly one config.pbtxt at its root or in one "
                f"top-level folder (found: {found})"
            ]
        )
    return configs[0].parent


def version_folders(paths: Iterable[PurePosixPath]) -> list[int]:
    """Numeric version folders (``1/``, ``2/``) among paths relative to the model root."""
    versions = {int(p.parts[0]) for p in paths if len(p.parts) >= 2 and p.parts[0].isdigit()}
    return sorted(versions)


def backend_problems(
    config: model_config_pb2.ModelConfig, files: Iterable[PurePosixPath]
) -> list[str]:
    """Files the backend needs that the archive lacks (python: ``<version>/model.py``)."""
    files = list(files)
    versions = version_folders(files)
    if not versions:
        return ["the model has no numeric version folder (e.g. 1/ with the model file)"]
    if config.backend == "python":
        missing = [v for v in versions if PurePosixPath(str(v), "model.py") not in set(files)]
        if missing:
            return [f"python backend: version folder(s) {missing} lack model.py"]
    return []


# --------------------------------------------------------------------------- workers


def backoff_delays(attempts: int, base: float, cap: float = 5.0) -> list[float]:
    """Delays between ``attempts`` tries: base, 2*base, 4*base ... capped."""
    return [min(cap, base * (2**i)) for i in range(max(0, attempts - 1))]


def execution_key(execution_id: str, attempt: int) -> str:
    """Idempotency key of one predict request: a redelivery has the same key; a deliberate
    rerun (a higher attempt) gets its own outcome."""
    return f"{execution_id}#{attempt}"


def outcome_event_id(key: str) -> str:
    """The outcome event's id, derived from the request's key: a duplicate outcome would
    carry the same id, so even the outbox keeps only one."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"prelabel:model-serving:outcome:{key}").hex


def is_last_delivery(delivery_count: int | None, delivery_limit: int) -> bool:
    """Whether a requeue would make the broker dead-letter the message.

    A quorum queue counts earlier failed deliveries in ``x-delivery-count`` and
    dead-letters once that count exceeds ``x-delivery-limit``.
    """
    return (delivery_count or 0) >= delivery_limit


def short_triton_reason(text: str) -> str:
    """Triton's error without the Python traceback it appends (``At: ...``)."""
    head = text.split("\n\nAt:", 1)[0].strip()
    return re.sub(r"\s+", " ", head)[:1000]


def new_id(prefix: str) -> str:
    """``<prefix>_<32 hex>``: ids of models, services and replicas."""
    return f"{prefix}_{uuid.uuid4().hex}"
