"""Sample data: handwritten digits the catalog classifier never saw."""

from __future__ import annotations

import io

from prelabel_demo.results import HELD_OUT_FROM


def digit_samples(count: int) -> list[tuple[int, bytes]]:
    """``count`` handwritten digits the classifier never saw, as 64x64 PNGs (dark ink on
    white, as scanned), with their true digit."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    digits = load_digits()
    available = len(digits.target) - HELD_OUT_FROM
    if not 1 <= count <= available:
        raise ValueError(f"images must be between 1 and {available} (the held-out samples)")
    samples = []
    for index in range(HELD_OUT_FROM, HELD_OUT_FROM + count):
        ink = digits.images[index] / 16.0
        pixels = (255 - ink * 255).astype(np.uint8)
        image = Image.fromarray(pixels).resize((64, 64), Image.Resampling.NEAREST)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        samples.append((int(digits.target[index]), buffer.getvalue()))
    return samples
