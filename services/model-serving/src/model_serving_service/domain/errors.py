"""Errors of model-serving's rules; each carries the HTTP status that reports it."""

from __future__ import annotations

from collections.abc import Sequence

from common import errors as common_errors
from common.errors import ServiceError


class ModelServingError(ServiceError):
    """A request that cannot be honoured; ``status`` is the HTTP status to answer with."""

    status = 400


class NotFoundError(ModelServingError, common_errors.NotFoundError):
    """The thing does not exist (or belongs to another project)."""

    status = 404


class ConflictError(ModelServingError, common_errors.ConflictError):
    """The request conflicts with the current state."""

    status = 409


class InvalidModelError(ModelServingError):
    """A model (catalog install options or BYOM upload) failed validation."""

    status = 422

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)

    def body(self) -> dict[str, object]:
        """The message and each problem on its own."""
        return {**super().body(), "problems": self.problems}


class TooLargeError(ModelServingError):
    """An upload above the configured limit."""

    status = 413


class UnavailableError(ModelServingError):
    """Something the request needs (the broker, Triton) cannot be reached right now."""

    status = 503
