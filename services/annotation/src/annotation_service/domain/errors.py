"""The errors the annotation service refuses requests and messages with."""

from __future__ import annotations

from common import errors


class AnnotationError(errors.ServiceError):
    """A request or message the service refuses, with the HTTP status it maps to."""

    status = 422


class NotFoundError(AnnotationError, errors.NotFoundError):
    """An id that does not exist in the caller's project."""

    status = 404

    def __init__(self, what: str, ident: str | None = None) -> None:
        super().__init__(what if ident is None else f"{what} {ident!r} not found", 404)


class ConflictError(AnnotationError, errors.ConflictError):
    """A change that clashes with the current state (an item already reviewed ...)."""

    status = 409
