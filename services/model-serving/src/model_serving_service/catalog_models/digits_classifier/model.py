"""Catalog model ``digits-classifier``: a Triton Python-backend model serving an ONNX
classifier of handwritten digits.

The ONNX file is built from weights that ship inside a package: scikit-learn's bundled
digits data set (1797 8x8 images). A logistic regression is trained deterministically on
the first 1500 samples (the last 297, written by other people, stay held out for
evaluation), exported with skl2onnx and run with onnxruntime. The build runs once per
machine (about ten seconds) and is cached; ``1/model.onnx`` next to this file wins if
present.

Input ``IMAGE`` [N, 1] TYPE_STRING: encoded images (PNG, JPEG ...). Each is turned into
the data set's representation: grayscale, dark ink on a light background inverted, cropped
to the ink, fitted into 32x32, averaged into 8x8 blocks scaled 0..16.
Output ``PROBABILITIES`` [N, 10] FP32.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]
from numpy.typing import NDArray
from PIL import Image

TRAIN_SAMPLES = 1500
BUILD_RECIPE = {
    "data": "sklearn.datasets.load_digits",
    "train_samples": TRAIN_SAMPLES,
    "estimator": "LogisticRegression(max_iter=5000)",
    "opset": 17,
}


def build_onnx() -> bytes:
    """Train the classifier on the bundled digits data and export it to ONNX."""
    from skl2onnx import to_onnx  # type: ignore[import-untyped]
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    digits = load_digits()
    features = digits.data.astype(np.float32)
    classifier = LogisticRegression(max_iter=5000)
    classifier.fit(features[:TRAIN_SAMPLES], digits.target[:TRAIN_SAMPLES])
    onnx_model = to_onnx(
        classifier,
        features[:1],
        options={id(classifier): {"zipmap": False}},
        target_opset=BUILD_RECIPE["opset"],
    )
    data: bytes = onnx_model.SerializeToString()
    return data


def cached_onnx() -> bytes:
    """The built model from the machine-wide cache, building it on a miss."""
    import sklearn  # type: ignore[import-untyped]

    recipe = json.dumps({**BUILD_RECIPE, "sklearn": sklearn.__version__}, sort_keys=True)
    fingerprint = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    cache_dir = Path(
        os.environ.get("PRELABEL_CATALOG_CACHE")
        or Path(tempfile.gettempdir()) / "prelabel-catalog-cache"
    )
    path = cache_dir / f"digits-classifier-{fingerprint}.onnx"
    if path.exists():
        return path.read_bytes()
    data = build_onnx()
    with contextlib.suppress(OSError):
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Atomic: two models loading at once never read a half-written file.
        fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    return data


def to_digit_features(data: bytes) -> NDArray[Any]:
    """Encoded image -> the 64 features of the digits data set (0..16)."""
    with Image.open(io.BytesIO(data)) as image:
        gray = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    if gray.mean() > 0.5:
        gray = 1.0 - gray  # dark ink on light paper -> ink is high, as in the data set
    mask = gray > 0.2
    if mask.any():
        ys, xs = np.nonzero(mask)
        gray = gray[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    height, width = gray.shape
    factor = 32.0 / max(height, width)
    new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
    glyph = Image.fromarray((gray * 255).astype(np.uint8)).resize(
        (new_w, new_h), Image.Resampling.BOX
    )
    canvas = Image.new("L", (32, 32), 0)
    canvas.paste(glyph, ((32 - new_w) // 2, (32 - new_h) // 2))
    pixels = np.asarray(canvas, dtype=np.float32) / 255.0
    features: NDArray[Any] = (pixels.reshape(8, 4, 8, 4).mean(axis=(1, 3)) * 16.0).reshape(64)
    return features


class TritonPythonModel:
    """Triton's entry point."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Load (or build) the ONNX model."""
        import onnxruntime as ort  # type: ignore[import-untyped]

        local = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        data = local.read_bytes() if local.exists() else cached_onnx()
        options = ort.SessionOptions()
        # One thread: Triton runs requests of other models beside this one.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        self.output_name = "probabilities" if "probabilities" in names else names[-1]

    def execute(self, requests: list[Any]) -> list[Any]:
        """All images of all requests (dynamic batching) go through onnxruntime at once."""
        features: list[NDArray[Any]] = []
        counts: list[int] = []
        errors: list[str | None] = []
        for request in requests:
            encoded = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            try:
                rows = [to_digit_features(bytes(v)) for v in encoded.reshape(-1)]
            except Exception as exc:
                errors.append(f"cannot decode image: {exc}")
                counts.append(0)
                continue
            errors.append(None)
            counts.append(len(rows))
            features.extend(rows)
        if features:
            batch = np.stack(features).astype(np.float32)
            probabilities = self.session.run([self.output_name], {self.input_name: batch})[0]
        else:
            probabilities = np.zeros((0, 10), dtype=np.float32)
        responses = []
        offset = 0
        for count, error in zip(counts, errors, strict=True):
            if error is not None:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(error)))
                continue
            part = np.asarray(probabilities[offset : offset + count], dtype=np.float32)
            offset += count
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("PROBABILITIES", part)]))
        return responses
