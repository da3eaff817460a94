"""Facts about an item's bytes: content type (by signature, with ``filetype``), image
size (Pillow reads headers only, without decoding pixels), hash and size checks; and
thumbnails (Pillow decodes, after the header's size passed the pixel limit)."""

from __future__ import annotations

import hashlib
import io
import json

import filetype
from PIL import Image, ImageOps, UnidentifiedImageError

from dataset_service.domain import (
    SUPPORTED_TYPES,
    BlobFacts,
    DatasetError,
    TooLargeError,
    UnsupportedTypeError,
)
from dataset_service.domain.thumbnails import ThumbnailError, check_pixels

THUMBNAIL_QUALITY = 80


def sniff_mimetype(data: bytes) -> str:
    """The content type of ``data``, from its bytes.

    Binary formats by their signature; otherwise UTF-8 text is ``application/json``
    when it parses as a JSON object or array (prompt items) and ``text/plain`` else.
    """
    kind = filetype.guess(data)
    if kind is not None:
        mime = str(kind.mime)
        if mime in SUPPORTED_TYPES:
            return mime
        raise UnsupportedTypeError(
            f"content type {mime} is not supported; supported: {', '.join(SUPPORTED_TYPES)}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsupportedTypeError(
            "content is neither a supported binary format nor UTF-8 text; "
            f"supported: {', '.join(SUPPORTED_TYPES)}"
        ) from exc
    if "\x00" in text:
        raise UnsupportedTypeError(f"binary content; supported: {', '.join(SUPPORTED_TYPES)}")
    stripped = text.lstrip()
    if stripped[:1] in {"{", "["}:
        try:
            json.loads(text)
        except ValueError:
            return "text/plain"
        return "application/json"
    return "text/plain"


def inspect_blob(data: bytes, max_bytes: int) -> BlobFacts:
    """Check size and type of an upload; raise the matching ``DatasetError``."""
    if not data:
        raise DatasetError("file is empty")
    if len(data) > max_bytes:
        raise TooLargeError(f"file is {len(data)} bytes; the limit is {max_bytes} bytes")
    return BlobFacts(hashlib.sha256(data).hexdigest(), len(data), sniff_mimetype(data))


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


def render_thumbnail(data: bytes, size: int, max_pixels: int) -> bytes:
    """A WebP of the image in ``data`` whose longest side is at most ``size`` pixels.

    Blocking and CPU-bound: run it in a thread. The header's size is checked against
    ``max_pixels`` before any pixel is decoded; JPEGs are decoded at a reduced scale
    where the thumbnail allows it. Orientation follows the EXIF tag; of an animation,
    the first frame. Deterministic: the same bytes and size give the same thumbnail.
    Raises :class:`ThumbnailError` for an image that is too large or cannot be decoded.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            check_pixels(int(width), int(height), max_pixels)
            if image.format == "JPEG":
                image.draft("RGB", (size, size))
            image.load()
            frame = ImageOps.exif_transpose(image)
            alpha = frame.mode in {"RGBA", "LA", "PA"} or "transparency" in frame.info
            frame = frame.convert("RGBA" if alpha else "RGB")
            frame.thumbnail((size, size), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            frame.save(out, format="WEBP", quality=THUMBNAIL_QUALITY, method=4)
    except Image.DecompressionBombError as exc:
        raise ThumbnailError(f"image refused as a decompression bomb: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        # OSError: truncated or corrupt data; ValueError/SyntaxError: a malformed header
        # some of Pillow's decoders report that way.
        raise ThumbnailError(f"image cannot be decoded: {exc}") from exc
    return out.getvalue()
