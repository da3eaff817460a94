"""Shared pieces of the contract tests: the five services and the web console as the code
defines them, manifest loading and snapshot comparison.

Deployment files (compose, Kubernetes, Prometheus, Dockerfiles) are checked
against these definitions, never against copies of them, so they cannot drift
from the code.
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

REPO = Path(__file__).resolve().parents[2]
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
UPDATE_SNAPSHOTS_ENV = "PRELABEL_UPDATE_SNAPSHOTS"

# Directory, package and env prefix of each service, as ARCHITECTURE.md fixes them;
# the tests check the prefix against the Settings class itself.
_SERVICES = (
    ("dataset", "dataset_service", "DATASET_"),
    ("trigger-router", "trigger_router_service", "TRIGGER_ROUTER_"),
    ("model-serving", "model_serving_service", "MODEL_SERVING_"),
    ("annotation", "annotation_service", "ANNOTATION_"),
    ("billing", "billing_service", "BILLING_"),
    # The web console: no database or broker, deployed beside the five (at / behind the proxy).
    ("console", "console_service", "CONSOLE_"),
)


@dataclass(frozen=True)
class Service:
    """One prelabel service as its code defines it."""

    name: str
    """Directory under services/ and name in compose and Kubernetes."""
    package: str
    """Python package (``python -m <package>`` runs it)."""
    prefix: str
    """Environment variable prefix of its Settings."""
    settings: type[BaseSettings]
    """Its Settings class."""

    @property
    def env_names(self) -> set[str]:
        """Every environment variable its Settings reads."""
        return env_names(self.settings)

    @property
    def required_env_names(self) -> set[str]:
        """The variables without a default: a deployment must set them."""
        return {
            _env_name(self.settings, name, field)
            for name, field in self.settings.model_fields.items()
            if field.is_required()
        }

    @property
    def port(self) -> int:
        """The HTTP port it listens on by default."""
        default = self.settings.model_fields["http_port"].default
        assert isinstance(default, int)
        return default

    @property
    def distribution(self) -> str:
        """Its distribution name in the uv workspace."""
        return f"prelabel-{self.name}"


def _env_name(settings: type[BaseSettings], name: str, field: Any) -> str:
    alias = field.validation_alias
    if isinstance(alias, str):
        return alias.upper()
    prefix = str(settings.model_config.get("env_prefix", ""))
    return f"{prefix}{name}".upper()


def env_names(settings: type[BaseSettings]) -> set[str]:
    """The environment variable of every field of ``settings``."""
    return {_env_name(settings, name, field) for name, field in settings.model_fields.items()}


def load_services() -> list[Service]:
    """Import each service's Settings class."""
    services = []
    for name, package, prefix in _SERVICES:
        module = importlib.import_module(f"{package}.settings")
        services.append(Service(name, package, prefix, module.Settings))
    return services


SERVICES = load_services()
SERVICE_IDS = [s.name for s in SERVICES]


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    return yaml.safe_load(path.read_text())


def load_yaml_all(path: Path) -> list[Any]:
    """Every non-empty document of a YAML stream."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def check_snapshot(name: str, text: str) -> None:
    """Fail with a diff when ``text`` differs from ``snapshots/<name>``.

    With PRELABEL_UPDATE_SNAPSHOTS=1 the snapshot is rewritten instead; review
    the change in git before committing it.
    """
    path = SNAPSHOTS / name
    how = (
        f"If the change is intended, regenerate with: "
        f"{UPDATE_SNAPSHOTS_ENV}=1 .venv/bin/pytest tests/contract, review `git diff "
        f"tests/contract/snapshots` (a breaking change needs a new .vN contract, see "
        f"ARCHITECTURE.md Messaging) and commit it."
    )
    if os.environ.get(UPDATE_SNAPSHOTS_ENV) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    if not path.exists():
        pytest.fail(f"snapshot {path.relative_to(REPO)} is missing. {how}", pytrace=False)
    expected = path.read_text()
    if expected != text:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"{name} (committed snapshot)",
                tofile=f"{name} (generated from code)",
            )
        )
        pytest.fail(f"{name} differs from its snapshot:\n{diff}\n{how}", pytrace=False)
