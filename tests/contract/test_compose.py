"""docker-compose.yml is a valid Compose file that cannot drift from the code.

No Docker engine is needed: the file is validated against the Compose
Specification's JSON Schema, and every variable a prelabel service gets is
checked against that service's Settings class.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from tests.contract.support import REPO, SERVICE_IDS, SERVICES, Service, load_yaml

pytestmark = pytest.mark.contract

COMPOSE_FILE = REPO / "docker-compose.yml"
# The Compose Specification schema (Apache-2.0, draft-07), vendored so CI needs
# nothing outside the repository; the shared copy beside the repository, when
# there is one, is checked too so a newer specification shows up here.
VENDORED_SCHEMA = REPO / "tests" / "contract" / "schemas" / "compose-spec.json"
SHARED_SCHEMA = REPO.parent / "shared" / "schemas" / "compose-spec.json"
SCHEMAS = [VENDORED_SCHEMA, *([SHARED_SCHEMA] if SHARED_SCHEMA.is_file() else [])]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return data


def service_env(compose: dict[str, Any], name: str) -> dict[str, str]:
    """A compose service's environment as a mapping (both compose syntaxes)."""
    env = compose["services"][name].get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


@pytest.mark.parametrize("schema_path", SCHEMAS, ids=["vendored", "shared"][: len(SCHEMAS)])
def test_compose_file_validates_against_the_compose_spec(
    compose: dict[str, Any], schema_path: Path
) -> None:
    schema = json.loads(schema_path.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(compose)
    ]
    assert errors == []


def test_every_container_has_a_healthcheck(compose: dict[str, Any]) -> None:
    missing = [
        name
        for name, service in compose["services"].items()
        if not service.get("healthcheck", {}).get("test") or service["healthcheck"].get("disable")
    ]
    assert missing == []


def test_dependencies_wait_until_healthy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: use the long depends_on syntax"
        for dependency, rule in depends_on.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert rule.get("condition") == "service_healthy", f"{name} -> {dependency}"


def test_every_prelabel_service_is_in_compose(compose: dict[str, Any]) -> None:
    assert set(SERVICE_IDS) <= set(compose["services"])


@pytest.mark.parametrize("service", SERVICES, ids=SERVICE_IDS)
def test_service_variables_are_settings_fields(compose: dict[str, Any], service: Service) -> None:
    assert service.settings.model_config.get("env_prefix") == service.prefix
    env = service_env(compose, service.name)
    unknown = sorted(set(env) - service.env_names)
    assert unknown == [], f"not fields of {service.package}.settings.Settings: {unknown}"


@pytest.mark.parametrize("service", SERVICES, ids=SERVICE_IDS)
def test_service_gets_every_required_setting(compose: dict[str, Any], service: Service) -> None:
    env = service_env(compose, service.name)
    assert sorted(service.required_env_names - set(env)) == []
    # Inside a container, loopback would make the API unreachable.
    assert env.get(f"{service.prefix}HTTP_HOST") == "0.0.0.0"


@pytest.mark.parametrize("service", SERVICES, ids=SERVICE_IDS)
def test_service_port_and_healthcheck_match_settings(
    compose: dict[str, Any], service: Service
) -> None:
    config = compose["services"][service.name]
    port = int(service_env(compose, service.name).get(f"{service.prefix}HTTP_PORT", service.port))
    assert port == service.port
    published = [re.sub(r"\$\{\w+:-(\d+)\}", r"\1", p) for p in config.get("ports", [])]
    assert f"127.0.0.1:{port}:{port}" in published
    probe = " ".join(config["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/healthz" in probe


@pytest.mark.parametrize("service", SERVICES, ids=SERVICE_IDS)
def test_service_builds_from_its_dockerfile(compose: dict[str, Any], service: Service) -> None:
    build = compose["services"][service.name]["build"]
    assert build["context"] == "."
    assert build["dockerfile"] == f"services/{service.name}/Dockerfile"
    assert (REPO / build["dockerfile"]).is_file()


def test_triton_uses_explicit_model_control_and_stays_internal(compose: dict[str, Any]) -> None:
    triton = compose["services"]["triton"]
    assert "--model-control-mode=explicit" in triton["command"]
    # Only model-serving (and Prometheus) may reach Triton: nothing published.
    assert "ports" not in triton
    serving = compose["services"]["model-serving"]
    env = service_env(compose, "model-serving")
    assert env["MODEL_SERVING_TRITON_GRPC_URL"] == "triton:8001"
    assert env["MODEL_SERVING_TRITON_HTTP_URL"] == "triton:8000"
    repository = next(v for v in triton["volumes"] if v.endswith(":/var/lib/prelabel"))
    assert repository in serving["volumes"], "model-serving and Triton share the model repository"


def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"


def test_no_service_uses_an_unpinned_image(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image", "")
        tag = image.rsplit(":", 1)[-1] if ":" in Path(image).name else ""
        assert tag not in ("", "latest"), f"{name}: pin {image!r}"
        assert re.fullmatch(r"[\w.-]+", tag), f"{name}: odd tag {tag!r}"


def test_only_the_proxy_listens_on_every_interface(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if name != "nginx":
                assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_secrets_come_from_the_env_file(compose: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text()
    assert "${DATASET_ADMIN_KEY:?" in text
    assert service_env(compose, "dataset")["DATASET_ADMIN_KEY"].startswith("${DATASET_ADMIN_KEY:?")
    example = (REPO / ".env.example").read_text()
    for name in set(re.findall(r"\$\{([A-Z_]+):\?", text)):
        assert f"{name}=" in example, f"{name} missing from .env.example"


def test_router_scales_worker_containers_with_model_serving_settings(
    compose: dict[str, Any],
) -> None:
    env = service_env(compose, "trigger-router")
    assert env["TRIGGER_ROUTER_SCALER_BACKEND"] == "docker"
    assert env["TRIGGER_ROUTER_DOCKER_NETWORK"] == compose["networks"]["default"]["name"]
    worker = json.loads(env["TRIGGER_ROUTER_MODEL_SERVING_ENV"])
    model_serving = next(s for s in SERVICES if s.name == "model-serving")
    assert sorted(set(worker) - model_serving.env_names) == []
    assert sorted(model_serving.required_env_names - set(worker)) == []
    socket = compose["services"]["trigger-router"]["volumes"]
    assert any(v.endswith(":/var/run/docker.sock") for v in socket)
    # No other container gets the engine's socket (root on the host).
    for name, service in compose["services"].items():
        if name != "trigger-router":
            assert not any("docker.sock" in v for v in service.get("volumes", [])), name


def test_healthchecks_have_no_spaces_inside_exec_arguments(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD", f"{name}: exec form"
        assert all(" " not in arg for arg in test), f"{name}: {test}"


def test_model_repository_is_writable_by_the_services_user(compose: dict[str, Any]) -> None:
    env = service_env(compose, "model-serving")
    assert env["MODEL_SERVING_MODEL_REPOSITORY"].startswith("/var/lib/prelabel/")
    dockerfile = (REPO / "services" / "model-serving" / "Dockerfile").read_text()
    assert "install -d -o 10001 -g 10001 /var/lib/prelabel" in dockerfile
