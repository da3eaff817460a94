"""The base of every service's domain errors, and how HTTP reports them.

Domain code raises a subclass (:class:`NotFoundError` with ``status = 404`` ...);
``common.service.build_service_app`` turns any of them into a JSON answer with
the status and a message that says what is wrong. No I/O here: domain modules
import it freely.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A rule was broken; ``status`` is the HTTP status that reports it."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def body(self) -> dict[str, object]:
        """The JSON answer; subclasses may add fields (a list of problems ...)."""
        return {"detail": self.message}


class NotFoundError(ServiceError):
    """The thing does not exist in the caller's project (another project's ids too).

    Services derive their own (``class NotFoundError(DatasetError, common.errors.NotFoundError)``)
    or raise this one; either is answered 404.
    """

    status = 404


class ConflictError(ServiceError):
    """The change clashes with existing data or the current state."""

    status = 409
