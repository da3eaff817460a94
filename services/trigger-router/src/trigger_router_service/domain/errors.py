"""The trigger-router's domain errors (answered with their ``status``)."""

from __future__ import annotations

from common import errors
from common.errors import ServiceError


class RouterError(ServiceError):
    """A rule was broken; ``status`` is the HTTP status that reports it."""

    status = 400


class NotFoundError(RouterError, errors.NotFoundError):
    """The thing does not exist in the caller's project (another project's ids too)."""

    status = 404


class ConflictError(RouterError, errors.ConflictError):
    """The change clashes with existing data or the current state."""

    status = 409
