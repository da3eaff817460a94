"""Thumbnails: the sizes there are, where each is stored, its ETag, and the checks that
decide whether an item's bytes may become one.

A thumbnail is made once per blob (content) and size and stored in the bucket under a
key derived from the blob's content hash, so items sharing content share thumbnails and
an ETag names exactly the bytes it stands for. ``FORMAT_VERSION`` is in the key and the
ETag: a change to how thumbnails are encoded gets new keys, never stale hits.
"""

from __future__ import annotations

from dataset_service.domain.errors import DatasetError

THUMBNAIL_SIZES: tuple[int, ...] = (128, 256, 512)
"""Longest side, in pixels, a thumbnail may be asked for (the image keeps its aspect
ratio and is never enlarged)."""

THUMBNAIL_MIMETYPE = "image/webp"
"""Thumbnails are WebP: small, lossy, with transparency kept."""

FORMAT_VERSION = "v1"


class ThumbnailError(DatasetError):
    """No thumbnail can be made for this request or item (422: the request is understood,
    the item cannot be shown as one)."""

    status = 422


def check_size(size: int) -> int:
    """``size`` if it is one of :data:`THUMBNAIL_SIZES`; :class:`ThumbnailError` else."""
    if size not in THUMBNAIL_SIZES:
        allowed = ", ".join(str(s) for s in THUMBNAIL_SIZES)
        raise ThumbnailError(f"thumbnail size {size} is not offered; sizes: {allowed}")
    return size


def check_image(item_id: str, mimetype: str | None, sha256: str | None) -> str:
    """The content hash of an item that can have a thumbnail: an image with a blob."""
    if not mimetype or not mimetype.startswith("image/"):
        raise ThumbnailError(
            f"item {item_id} is {mimetype or 'of unknown type'}, not an image: "
            "only images have thumbnails"
        )
    if not sha256:
        raise ThumbnailError(f"item {item_id} has no blob to make a thumbnail of")
    return sha256


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Refuse to decode an image larger than ``max_pixels`` (a decompression bomb: a small
    file that would take gigabytes of memory once decoded)."""
    if width * height > max_pixels:
        raise ThumbnailError(
            f"image is {width}x{height} = {width * height} pixels; thumbnails are made of "
            f"images up to {max_pixels} pixels"
        )


def thumbnail_key(sha256: str, size: int) -> str:
    """The bucket key of the thumbnail of content ``sha256`` at ``size``."""
    return f"thumbnails/{FORMAT_VERSION}/{size}/{sha256[:2]}/{sha256[2:4]}/{sha256}.webp"


def thumbnail_keys(sha256: str) -> list[str]:
    """Every key a thumbnail of content ``sha256`` may be stored under."""
    return [thumbnail_key(sha256, size) for size in THUMBNAIL_SIZES]


def thumbnail_etag(sha256: str, size: int) -> str:
    """A strong ETag: the thumbnail's bytes follow from the content, size and format."""
    return f'"thumb-{FORMAT_VERSION}-{size}-{sha256}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, as RFC 9110
    asks for ``If-None-Match``; ``*`` matches any)."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        if tag.removeprefix("W/") == etag:
            return True
    return False
