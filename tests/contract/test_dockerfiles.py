"""The five service Dockerfiles follow one pattern and agree with each service's code.

No Docker engine is needed: the instructions are read as text.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from tests.contract.support import REPO, SERVICE_IDS, SERVICES, Service

pytestmark = pytest.mark.contract


IMAGES = REPO / "deploy" / "images"
OWN_IMAGES = [IMAGES / "worker.Dockerfile", IMAGES / "triton-cpu.Dockerfile"]


def instructions(service: Service | Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    path = service if isinstance(service, Path) else REPO / "services" / service.name / "Dockerfile"
    text = path.read_text()
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "dangling line continuation"
    result = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def only(service: Service | Path, keyword: str) -> str:
    """Arguments of the last ``keyword`` instruction (the final stage's)."""
    found = [rest for kw, rest in instructions(service) if kw == keyword]
    assert found, f"{service}: no {keyword}"
    return found[-1]


@pytest.mark.parametrize("service", SERVICES, ids=SERVICE_IDS)
def test_runs_the_service_package(service: Service) -> None:
    assert json.loads(only(service, "CMD")) == ["python", "-m", service.package]


@pytest.mark.parametrize("service", SERVICES, ids=SERVICE_IDS)
def test_exposes_and_healthchecks_the_settings_port(service: Service) -> None:
    assert only(service, "EXPOSE") == str(service.port)
    healthcheck = only(service, "HEALTHCHECK")
    assert f"http://127.0.0.1:{service.port}/healthz" in healthcheck
    env = only(service, "ENV")
    assert f"{service.prefix}HTTP_HOST=0.0.0.0" in env
    assert f"{service.prefix}HTTP_PORT={service.port}" in env
    for name in re.findall(r"\b([A-Z][A-Z_]+)=", env):
        if name.startswith(service.prefix):
            assert name in service.env_names, f"{name} is not a Settings field"


@pytest.mark.parametrize("service", SERVICES, ids=SERVICE_IDS)
def test_installs_only_its_workspace_member_from_the_lock(service: Service) -> None:
    project = tomllib.loads((REPO / "services" / service.name / "pyproject.toml").read_text())
    assert project["project"]["name"] == service.distribution
    runs = " ".join(rest for kw, rest in instructions(service) if kw == "RUN")
    assert f"--package {service.distribution}" in runs
    assert "--frozen" in runs
    assert "--no-default-groups" in runs


@pytest.mark.parametrize(
    "image", [*SERVICES, *OWN_IMAGES], ids=[*SERVICE_IDS, *(p.stem for p in OWN_IMAGES)]
)
def test_is_multi_stage_from_one_base_argument_and_non_root(image: Service | Path) -> None:
    steps = instructions(image)
    assert steps[0] == ("ARG", "BASE=python:3.11-slim"), "slim by default, any base by --build-arg"
    bases = [rest.split()[0] for kw, rest in steps if kw == "FROM"]
    assert bases == ["${BASE}"] * 2, "build stage + runtime stage, both from BASE"
    user = only(image, "USER").split(":")[0]
    assert user.isdigit(), "numeric user, so Kubernetes can verify runAsNonRoot"
    assert int(user) != 0, "non-root user"


def test_dockerfiles_share_one_pattern() -> None:
    def normalised(service: Service) -> str:
        text = (REPO / "services" / service.name / "Dockerfile").read_text()
        for word in (service.package, service.prefix, service.name, str(service.port)):
            text = text.replace(word, "<>")
        return text

    patterns = {normalised(s) for s in SERVICES}
    assert len(patterns) == 1, "keep the five Dockerfiles identical up to names and port"


def test_gpu_triton_image_is_ngc_based_and_non_root() -> None:
    steps = instructions(IMAGES / "triton-gpu.Dockerfile")
    assert steps[0][0] == "ARG"
    assert steps[0][1].startswith("BASE=nvcr.io/nvidia/tritonserver:")
    assert only(IMAGES / "triton-gpu.Dockerfile", "USER") == "10001:10001"


@pytest.mark.parametrize("name", ["triton-cpu", "triton-gpu"])
def test_triton_images_take_flags_only(name: str) -> None:
    # compose's `command:` and the Deployment's `args:` are flags for either image.
    path = IMAGES / f"{name}.Dockerfile"
    assert "tritonserver" in only(path, "ENTRYPOINT") or "triton-entrypoint" in only(
        path, "ENTRYPOINT"
    )
    assert all(arg.startswith("--") for arg in json.loads(only(path, "CMD")))


def test_the_worker_image_runs_the_worker_not_the_api() -> None:
    assert json.loads(only(IMAGES / "worker.Dockerfile", "CMD")) == [
        "python",
        "-m",
        "model_serving_service.worker",
    ]
    runs = " ".join(rest for kw, rest in instructions(IMAGES / "worker.Dockerfile") if kw == "RUN")
    assert "--package prelabel-model-serving" in runs


def test_healthchecks_have_no_spaces_inside_exec_arguments() -> None:
    # Podman's Docker API splits a healthcheck's CMD arguments on spaces.
    for path in [*(REPO / "services").glob("*/Dockerfile"), *IMAGES.glob("*.Dockerfile")]:
        for keyword, rest in instructions(path):
            if keyword == "HEALTHCHECK":
                command = json.loads(rest.split("CMD", 1)[1])
                assert all(" " not in arg for arg in command), path


def test_dockerignore_sends_only_sources() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert next(line for line in lines if not line.startswith("#")) == "*"
    assert {"!libs/", "!services/", "!uv.lock", "!pyproject.toml"} <= set(lines)
