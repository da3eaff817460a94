"""Catalog model ``ocr-text``: text detection + recognition as a Triton Python-backend
model around rapidocr-onnxruntime, whose wheel ships the PP-OCRv4 ONNX models.

Input ``IMAGE`` [N, 1] TYPE_STRING: encoded images.
Outputs, one row per detected line, padded to the longest image of the request with a
score of -1: ``POLYGONS`` [N, K, 4, 2] FP32 (quadrilateral corners in pixels),
``TEXTS`` [N, K] TYPE_STRING (UTF-8 transcription), ``SCORES`` [N, K] FP32.

Model parameters (``config.pbtxt``): ``det_limit_side_len`` (longest side the detector
works at; larger images are scaled down, smaller ones are not scaled up).
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]
from numpy.typing import NDArray
from PIL import Image


def decode_bgr(data: bytes) -> NDArray[Any]:
    """Encoded image -> H x W x 3 uint8 BGR (OpenCV's order, which rapidocr expects)."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = np.asarray(image.convert("RGB"))
    bgr: NDArray[Any] = np.ascontiguousarray(rgb[:, :, ::-1])
    return bgr


def _parameter(config: dict[str, Any], key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return str(value) if value else default


class TritonPythonModel:
    """Triton's entry point."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Create the OCR engine (loads the three ONNX models from the rapidocr wheel)."""
        from rapidocr_onnxruntime import RapidOCR  # type: ignore[import-untyped]

        config = json.loads(args["model_config"])
        # limit_type "max": small images are not scaled up (the default "min" scales a
        # 640x200 image to 2355x736 and makes detection four times slower).
        self.engine = RapidOCR(
            det_limit_type="max",
            det_limit_side_len=int(_parameter(config, "det_limit_side_len", "960")),
        )

    def _lines(self, data: bytes) -> list[tuple[NDArray[Any], str, float]]:
        result, _ = self.engine(decode_bgr(data))
        lines = []
        for box, text, score in result or []:
            quad = np.asarray(box, dtype=np.float32).reshape(4, 2)
            lines.append((quad, str(text), float(score)))
        return lines

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request; images are recognised one after another."""
        responses = []
        for request in requests:
            encoded = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            try:
                per_image = [self._lines(bytes(v)) for v in encoded.reshape(-1)]
            except Exception as exc:
                responses.append(
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"cannot read image: {exc}")
                    )
                )
                continue
            n = len(per_image)
            k = max([len(lines) for lines in per_image] + [1])
            polygons = np.zeros((n, k, 4, 2), dtype=np.float32)
            scores = np.full((n, k), -1.0, dtype=np.float32)
            texts = np.full((n, k), b"", dtype=object)
            for i, lines in enumerate(per_image):
                for j, (quad, text, score) in enumerate(lines):
                    polygons[i, j] = quad
                    scores[i, j] = score
                    texts[i, j] = text.encode("utf-8")
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor("POLYGONS", polygons),
                        pb_utils.Tensor("TEXTS", texts),
                        pb_utils.Tensor("SCORES", scores),
                    ]
                )
            )
        return responses
