"""Image facts from bytes (Pillow reads headers only, without decoding pixels)."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError


def image_size(data: bytes, mimetype: str) -> tuple[int | None, int | None]:
    """``(width, height)`` of an image, ``(None, None)`` for other types.

    Raises ``ValueError`` for an image whose header cannot be read.
    """
    if not mimetype.startswith("image/"):
        return None, None
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"image header cannot be read: {exc}") from exc
    return int(width), int(height)
