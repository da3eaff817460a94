"""Where each of the five services lives, from one base URL and per-service overrides.

Behind the reverse proxy every service ``X`` is at ``<base>/api/X/``: one URL
(``PRELABEL_URL``) serves every client. ``PRELABEL_<SERVICE>_URL`` points one service
somewhere else (straight at its port, in tests and development). With neither, each
service is looked for on its local-stack port (``make up``: 8081..8085).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Service = Literal["dataset", "trigger-router", "model-serving", "annotation", "billing"]
SERVICES: tuple[Service, ...] = (
    "dataset",
    "trigger-router",
    "model-serving",
    "annotation",
    "billing",
)
LOCAL_PORTS: Mapping[Service, int] = {
    "dataset": 8081,
    "trigger-router": 8082,
    "model-serving": 8083,
    "annotation": 8084,
    "billing": 8085,
}
"""The ports ``scripts/stack.py up`` serves the services on."""


def env_name(service: Service) -> str:
    """The override's variable: ``PRELABEL_TRIGGER_ROUTER_URL`` for ``trigger-router``."""
    return f"PRELABEL_{service.upper().replace('-', '_')}_URL"


def field_name(service: Service) -> str:
    """The override's settings field: ``trigger_router_url``."""
    return f"{service.replace('-', '_')}_url"


@dataclass(frozen=True)
class Endpoints:
    """The base URL of every service."""

    dataset: str
    trigger_router: str
    model_serving: str
    annotation: str
    billing: str

    @classmethod
    def resolve(
        cls, base_url: str | None = None, overrides: Mapping[Service, str | None] | None = None
    ) -> Endpoints:
        """Per service: its override, else ``<base_url>/api/<service>``, else its local port."""
        found = dict.fromkeys(SERVICES, "")
        for service in SERVICES:
            override = (overrides or {}).get(service)
            if override:
                found[service] = override.rstrip("/")
            elif base_url:
                found[service] = f"{base_url.rstrip('/')}/api/{service}"
            else:
                found[service] = f"http://127.0.0.1:{LOCAL_PORTS[service]}"
        return cls(
            dataset=found["dataset"],
            trigger_router=found["trigger-router"],
            model_serving=found["model-serving"],
            annotation=found["annotation"],
            billing=found["billing"],
        )

    def of(self, service: Service) -> str:
        """One service's base URL."""
        return str(getattr(self, service.replace("-", "_")))

    def as_dict(self) -> dict[Service, str]:
        """Service name -> base URL."""
        return {service: self.of(service) for service in SERVICES}
