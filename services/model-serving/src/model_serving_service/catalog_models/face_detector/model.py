"""Catalog model ``face-detector``: OpenCV 4's frontal-face Haar cascade (shipped inside
the opencv-python wheel; OpenCV 5 dropped cascades) as a Triton Python-backend model.

Input ``IMAGE`` [N, 1] TYPE_STRING: encoded images.
Outputs, padded to the image with most faces with a score of -1: ``BOXES`` [N, K, 4] FP32
(x1, y1, x2, y2 in pixels) and ``SCORES`` [N, K] FP32. The score is the logistic of the
cascade's final-stage weight, so it lies in (0, 1) and grows with the detector's margin.

Model parameters (``config.pbtxt``): ``scale_factor``, ``min_neighbors``, ``min_size``.
"""

from __future__ import annotations

import io
import json
from typing import Any

import cv2
import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]
from numpy.typing import NDArray
from PIL import Image

CASCADE = "haarcascade_frontalface_default.xml"


def decode_gray(data: bytes) -> NDArray[Any]:
    """Encoded image -> H x W uint8 grayscale, histogram-equalised."""
    with Image.open(io.BytesIO(data)) as image:
        gray = np.asarray(image.convert("L"))
    equalized: NDArray[Any] = cv2.equalizeHist(np.ascontiguousarray(gray))
    return equalized


def _parameter(config: dict[str, Any], key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return str(value) if value else default


class TritonPythonModel:
    """Triton's entry point."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Load the cascade from the OpenCV wheel."""
        config = json.loads(args["model_config"])
        self.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)  # type: ignore[attr-defined]
        if self.cascade.empty():
            raise RuntimeError(f"OpenCV cannot load {CASCADE} from {cv2.data.haarcascades}")  # type: ignore[attr-defined]
        self.scale_factor = float(_parameter(config, "scale_factor", "1.1"))
        self.min_neighbors = int(_parameter(config, "min_neighbors", "5"))
        size = int(_parameter(config, "min_size", "30"))
        self.min_size = (size, size)

    def _faces(self, data: bytes) -> list[tuple[NDArray[Any], float]]:
        gray = decode_gray(data)
        boxes, _, weights = self.cascade.detectMultiScale3(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=self.min_size,
            outputRejectLevels=True,
        )
        faces = []
        for (x, y, w, h), weight in zip(boxes, np.asarray(weights).reshape(-1), strict=False):
            box = np.array([x, y, x + w, y + h], dtype=np.float32)
            faces.append((box, float(1.0 / (1.0 + np.exp(-float(weight))))))
        return faces

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request."""
        responses = []
        for request in requests:
            encoded = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            try:
                per_image = [self._faces(bytes(v)) for v in encoded.reshape(-1)]
            except Exception as exc:
                responses.append(
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"cannot read image: {exc}")
                    )
                )
                continue
            n = len(per_image)
            k = max([len(faces) for faces in per_image] + [1])
            boxes = np.zeros((n, k, 4), dtype=np.float32)
            scores = np.full((n, k), -1.0, dtype=np.float32)
            for i, faces in enumerate(per_image):
                for j, (box, score) in enumerate(faces):
                    boxes[i, j] = box
                    scores[i, j] = score
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("BOXES", boxes), pb_utils.Tensor("SCORES", scores)]
                )
            )
        return responses
