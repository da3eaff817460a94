"""The dataset service's domain errors; each carries the HTTP status that reports it."""

from __future__ import annotations

from common import errors


class DatasetError(errors.ServiceError):
    """A rule was broken; ``status`` is the HTTP status that reports it."""

    status = 400


class NotFoundError(DatasetError, errors.NotFoundError):
    """The thing does not exist in the caller's project (another project's ids too)."""

    status = 404


class UnauthorizedError(DatasetError):
    """The request or command does not prove its project (no key, or an unknown one)."""

    status = 401


class ConflictError(DatasetError, errors.ConflictError):
    """The change clashes with existing data."""

    status = 409


class TooLargeError(DatasetError):
    """The upload is over the size limit."""

    status = 413


class UnsupportedTypeError(DatasetError):
    """The content type is not one prelabel stores."""

    status = 415
