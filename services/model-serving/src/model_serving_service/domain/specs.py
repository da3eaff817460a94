"""Model specs: everything the worker needs besides the Triton model itself.

A *model spec* says which input tensor receives the item (the encoded file bytes, or
decoded pixels resized to a fixed size), which output tensors mean what (the
*adapter*), the labels, the label map, the confidence threshold, the batch size and
the timeout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model_serving_service.domain.errors import InvalidModelError

InputType = Literal["image", "text"]
AdapterType = Literal["classification", "boxes", "polygons", "text"]
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


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
