"""The five prelabel services, each ``python -m <package>`` with its Settings' variables.

What a service is given is keyed by the field names of its ``Settings`` class and
turned into variables through that class (``env_prefix`` + field name, or the field's
alias): a field the class does not have is not set, and a renamed field cannot leave a
stale variable behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prelabel_stack.components.base import ProcessComponent
from prelabel_stack.config import REPO_ROOT, SERVICES, ServiceSpec, StackConfig, StackError
from prelabel_stack.probes import Probe, http_status


def spec_of(name: str) -> ServiceSpec:
    """The service called ``name`` (``model-serving``)."""
    return next(s for s in SERVICES if s.name == name)


class Service(ProcessComponent):
    """One prelabel service: ``python -m <package>`` with the stack's settings.

    ``settings``: values by field name that win over the environment and the stack
    (tests give a service its own schema and topology prefix this way).
    """

    # A service waits on migrations and broker topology at start-up.
    default_timeout_s = 60.0

    def __init__(
        self,
        config: StackConfig,
        spec: ServiceSpec,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(config)
        self.spec = spec
        self.name = spec.name
        self.cmdline_token = spec.package
        self.overrides = dict(settings or {})

    @property
    def port(self) -> int:
        """The service's HTTP port."""
        return self.config.service_ports[self.spec.name]

    @property
    def url(self) -> str:
        """The service's base URL."""
        return self.config.service_url(self.spec.name)

    def probe(self) -> Probe:
        """``GET /readyz`` answers 200."""
        code = http_status(f"{self.url}/readyz")
        if code == 200:
            return Probe(True)
        return Probe(False, "no answer" if code is None else f"/readyz HTTP {code}")

    def prepare(self) -> None:
        """Fail with a clear message when the package has no ``__main__`` yet."""
        if importlib.util.find_spec(f"{self.spec.package}.__main__") is None:
            raise StackError(
                f"{self.spec.package} has no __main__ module (cannot run "
                f"`python -m {self.spec.package}`); use --no-services until it exists"
            )

    def command(self) -> list[str]:
        """``<venv python> -m <package>``."""
        return [sys.executable, "-m", self.spec.package]

    def cwd(self) -> Path:
        """The repository root."""
        return REPO_ROOT

    def stack_settings(self) -> dict[str, Any]:
        """What the stack gives this service, by settings field (only fields it has)."""
        c = self.config
        dataset = c.service_url("dataset")
        values: dict[str, Any] = {
            "amqp_url": c.amqp_url,
            "database_url": c.database_url(),
            "http_port": self.port,
            "log_level": c.log_level,
            # Behind nginx at /api/<name>: OpenAPI's server URL and /docs point there.
            "root_path": self.spec.proxy_path,
            "s3_endpoint_url": c.s3_endpoint,
            "s3_access_key": c.s3_access_key,
            "s3_secret_key": c.s3_secret_key,
            "s3_bucket": c.s3_bucket,
            "s3_region": c.s3_region,
            "triton_grpc_url": c.triton_grpc_url,
            "triton_http_url": c.triton_http_url,
            "model_repository": c.model_repository,
            "admin_key": c.admin_key,
            # Keys are checked at the dataset service, wherever its port is.
            "auth_url": dataset,
            "dataset_url": dataset,
            # The console calls the other four through the one URL.
            "prelabel_url": c.proxy_url,
            # The router checks pipelines' task and predict nodes against these.
            "annotation_url": c.service_url("annotation"),
            "model_serving_url": c.service_url("model-serving"),
        }
        values |= self.overrides
        return {k: v for k, v in values.items() if self.spec.has_setting(k)}

    def settings_env(self) -> dict[str, str]:
        """The stack's settings as this service's variables (``DATASET_HTTP_PORT`` ...)."""
        return {self.spec.env_name(k): str(v) for k, v in self.stack_settings().items()}

    def env(self) -> dict[str, str]:
        """The stack's settings; variables already in the environment win (overrides too)."""
        values = self.settings_env()
        if self.spec.name == "trigger-router":
            # Its local scaler backend starts model-serving workers, which read their
            # settings from the MODEL_SERVING_* variables of the router's environment.
            worker = Service(self.config, spec_of("model-serving"))
            values |= worker.settings_env()
        env = dict(os.environ)
        for key, value in values.items():
            env.setdefault(key, value)
        chosen = {k: v for k, v in self.stack_settings().items() if k in self.overrides}
        env |= {self.spec.env_name(k): str(v) for k, v in chosen.items()}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def settings(self) -> Any:
        """The service's ``Settings`` as the process will read them (limits for the proxy)."""
        env = self.env()
        cls = self.spec.settings_class
        values: dict[str, Any] = {}
        for name, info in cls.model_fields.items():
            variable = self.spec.env_name(name)
            if variable in env:
                value: Any = env[variable]
                if _is_complex(info.annotation):
                    # Lists, tuples and mappings are JSON in the environment, which
                    # pydantic-settings decodes when it reads variables (model_validate
                    # does not).
                    value = json.loads(value)
                values[variable if info.validation_alias else name] = value
        # Validated from these values alone: what the process's environment will hold.
        return cls.model_validate(values)


def _is_complex(annotation: Any) -> bool:
    """Whether a field of this type is read from JSON in the environment."""
    origin = typing.get_origin(annotation) or annotation
    if origin in (list, tuple, dict, set, frozenset):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_complex(a) for a in typing.get_args(annotation) if a is not type(None))
    return False
