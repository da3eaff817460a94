"""Base class of every message contract."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict


class Contract(BaseModel):
    """A versioned message body: frozen, tolerant of unknown fields (tolerant reader).

    Subclasses set ``routing_key`` (``item.created.v1``), ``producer`` (the service
    whose exchange carries it) and ``kind``.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)

    routing_key: ClassVar[str]
    producer: ClassVar[str]
    kind: ClassVar[Literal["event", "command"]] = "event"
