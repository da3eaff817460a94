"""The billing service's refusals."""

from __future__ import annotations

from common.errors import ServiceError


class BillingError(ServiceError):
    """A request or event the service refuses, with the HTTP status it maps to."""

    status = 422
