"""Errors the client raises, with the server's own message."""

from __future__ import annotations

from typing import Any

import httpx


class ClientError(Exception):
    """Something the caller must fix (bad options, missing dataset, bad metadata)."""


class ApiError(Exception):
    """The dataset service answered with an error status."""

    def __init__(self, status_code: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.retry_after = retry_after

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """Build the error from a response, keeping the server's explanation."""
        return cls(response.status_code, error_message(response), _retry_after(response))


def error_message(response: httpx.Response) -> str:
    """The human part of an error response.

    The dataset service answers ``{"detail": "..."}``, ``{"detail": {"message": ...,
    "path": ...}}`` (DQL) or FastAPI's list of validation errors; anything else
    (a proxy's HTML page) is shown as text, shortened.
    """
    try:
        body: Any = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:300] if text else response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict):
        message = str(detail.get("message") or detail.get("error") or detail)
        path = detail.get("path")
        return f"{message} (at {path})" if path else message
    if isinstance(detail, list):
        parts = []
        for entry in detail:
            if isinstance(entry, dict):
                where = ".".join(str(part) for part in entry.get("loc", ()))
                parts.append(f"{where}: {entry.get('msg', entry)}" if where else str(entry))
            else:
                parts.append(str(entry))
        return "; ".join(parts)
    return str(detail)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        # The HTTP-date form is rare from APIs; backoff alone is fine then.
        return None
