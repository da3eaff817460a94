"""From item bytes to annotations: decode and check the input, call Triton once per
batch, turn outputs into annotations. Shared by the predict worker and predict-now."""

from __future__ import annotations

import asyncio
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from common.contracts import PredictedAnnotation
from model_serving_service.adapters.triton import InferenceError, TritonInference
from model_serving_service.domain.outputs import AdapterError, Geometry
from model_serving_service.domain.specs import ModelSpec, input_problem


class BadInputError(Exception):
    """The item can never be predicted by this model (wrong type, undecodable)."""

    def __init__(self, reason: str, *, poison: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.poison = poison
        """Undecodable content: the request also goes to the dead-letter queue."""


@dataclass(frozen=True)
class Prepared:
    """One item ready for the model: its tensor row and its geometry."""

    row: NDArray[Any] | bytes
    geometry: Geometry


def _prepare(spec: ModelSpec, data: bytes, mimetype: str | None, max_pixels: int) -> Prepared:
    problem = input_problem(spec.input_type, mimetype)
    if problem is not None:
        raise BadInputError(problem)
    if spec.input_type == "text":
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInputError(f"text is not UTF-8: {exc}", poison=True) from exc
        return Prepared(data, Geometry(0, 0, 0, 0))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise BadInputError(
                        f"image is {width}x{height}; at most {max_pixels} pixels are accepted"
                    )
                # Decode fully: a truncated file must fail here, not inside the model
                # where it would fail the whole batch.
                image.load()
                if spec.input.kind == "encoded":
                    return Prepared(data, Geometry(width, height, width, height))
                assert spec.input.width is not None
                assert spec.input.height is not None
                converted = image.convert(spec.input.color).resize(
                    (spec.input.width, spec.input.height), Image.Resampling.BILINEAR
                )
    except BadInputError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise BadInputError(f"cannot decode image: {exc}", poison=True) from exc
    pixels = np.asarray(converted)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if spec.input.layout == "CHW":
        pixels = np.transpose(pixels, (2, 0, 1))
    if spec.input.dtype == "FP32":
        row = pixels.astype(np.float32) * np.float32(spec.input.scale)
    else:
        row = pixels.astype(np.uint8)
    return Prepared(
        np.ascontiguousarray(row),
        Geometry(width, height, spec.input.width, spec.input.height),
    )


def prepare_many(
    spec: ModelSpec, items: Sequence[tuple[bytes, str | None]], max_pixels: int = 89_478_485
) -> list[Prepared | BadInputError]:
    """Check and decode a batch (call it in a thread): a result or the reason per item."""
    out: list[Prepared | BadInputError] = []
    for data, mimetype in items:
        try:
            out.append(_prepare(spec, data, mimetype, max_pixels))
        except BadInputError as exc:
            out.append(exc)
    return out


async def prepare(
    spec: ModelSpec, data: bytes, mimetype: str | None, *, max_pixels: int = 89_478_485
) -> Prepared:
    """Check and decode one item (off the event loop); :class:`BadInputError` if unfit."""
    return await asyncio.to_thread(_prepare, spec, data, mimetype, max_pixels)


def _batch_tensor(spec: ModelSpec, items: Sequence[Prepared]) -> NDArray[Any]:
    if spec.input.kind == "encoded":
        values = [item.row for item in items]
        return np.array(values, dtype=object).reshape(len(values), 1)
    return np.stack([np.asarray(item.row) for item in items])


async def predict_batch(
    spec: ModelSpec,
    triton_name: str,
    inference: TritonInference,
    items: Sequence[Prepared],
    *,
    timeout: float,
) -> list[list[PredictedAnnotation]]:
    """One Triton call for ``items``; annotations per item.

    Raises the errors of :meth:`TritonInference.infer`, and :class:`InferenceError` when
    the outputs do not fit the adapter.
    """
    roles = dict(spec.adapter.outputs)
    tensors = sorted(set(roles.values()))
    outputs = await inference.infer(
        triton_name, spec.input.tensor, _batch_tensor(spec, items), tensors, timeout=timeout
    )
    by_role = {role: outputs[tensor] for role, tensor in roles.items()}
    try:
        return await asyncio.to_thread(_adapt, spec, by_role, [item.geometry for item in items])
    except AdapterError as exc:
        raise InferenceError(
            f"model outputs do not fit the '{spec.adapter.type}' adapter: {exc}"
        ) from exc


def _adapt(
    spec: ModelSpec, by_role: dict[str, NDArray[Any]], geometries: list[Geometry]
) -> list[list[PredictedAnnotation]]:
    from model_serving_service.domain.outputs import adapt

    return adapt(spec, by_role, geometries)
