"""Pure rules of the dataset service: names, directories, content types, metadata.

Nothing here does I/O; the HTTP routes, the ingest handler and the upload client
all go through these functions, so every path into a dataset applies the same rules.
"""

from __future__ import annotations

from dataset_service.domain.errors import (
    ConflictError,
    DatasetError,
    NotFoundError,
    TooLargeError,
    UnauthorizedError,
    UnsupportedTypeError,
)
from dataset_service.domain.metadata import (
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    SUPPORTED_TYPES,
    BlobFacts,
    check_user_metadata,
    parse_user_metadata,
    system_metadata,
)
from dataset_service.domain.names import (
    MAX_DIR_DEPTH,
    MAX_KEY_BYTES,
    MAX_NAME_LENGTH,
    check_blob_key,
    join_filename,
    normalize_dir,
    sanitize_name,
)

__all__ = [
    "MAX_DIR_DEPTH",
    "MAX_KEY_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_METADATA_DEPTH",
    "MAX_NAME_LENGTH",
    "SUPPORTED_TYPES",
    "BlobFacts",
    "ConflictError",
    "DatasetError",
    "NotFoundError",
    "TooLargeError",
    "UnauthorizedError",
    "UnsupportedTypeError",
    "check_blob_key",
    "check_user_metadata",
    "join_filename",
    "normalize_dir",
    "parse_user_metadata",
    "sanitize_name",
    "system_metadata",
]
