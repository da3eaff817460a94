"""docker-compose's nginx and the Kubernetes Ingress route and limit as the local stack's
(the five APIs under /api/<service>/, the web console at /).

Offline: the compose file against the Compose spec's schema, its nginx variables against
what :func:`prelabel_stack.components.proxy.site_values` derives from the services'
Settings, and the Ingress paths and limits against the same values.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import yaml

from prelabel_stack import CONSOLE, SERVICES, StackConfig
from prelabel_stack.components.proxy import TEMPLATE, render_template, site_values

REPO = Path(__file__).resolve().parents[3]
SCHEMA = REPO / "tests" / "contract" / "schemas" / "compose-spec.json"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def _compose_values() -> dict[str, str]:
    """What the local stack would render for containers named after the services."""
    config = dataclasses.replace(
        StackConfig.from_env(),
        service_ports={s.name: s.default_port for s in (*SERVICES, CONSOLE)},
    )
    return site_values(config, listen="8090", upstream=lambda spec, port: f"{spec.name}:{port}")


def test_compose_with_the_proxy_validates_against_the_compose_spec() -> None:
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(_compose())


def test_compose_nginx_gets_the_values_the_local_stack_renders() -> None:
    nginx = _compose()["services"]["nginx"]
    environment = {k: str(v) for k, v in nginx["environment"].items()}

    assert {k: v for k, v in environment.items() if k.startswith("PRELABEL_")} == (
        _compose_values()
    )
    assert "./deploy/nginx/templates:/etc/nginx/templates:ro" in nginx["volumes"]
    # The template renders completely with them (nothing left for envsubst to miss).
    assert "${" not in render_template(TEMPLATE.read_text(), _compose_values())


def test_every_service_knows_its_prefix_in_compose_and_kubernetes() -> None:
    compose = _compose()["services"]
    configmap = yaml.safe_load(
        (REPO / "deploy" / "k8s" / "base" / "app" / "configmap.yaml").read_text()
    )

    for spec in SERVICES:
        variable = spec.env_name("root_path")
        assert compose[spec.name]["environment"][variable] == spec.proxy_path
        assert configmap["data"][variable] == spec.proxy_path


def test_the_ingress_routes_every_service_with_the_proxys_limits() -> None:
    docs = [
        d
        for d in yaml.safe_load_all(
            (REPO / "deploy" / "k8s" / "base" / "app" / "ingress.yaml").read_text()
        )
        if d and d["kind"] == "Ingress"
    ]
    values = _compose_values()
    routes: dict[str, tuple[int, str]] = {}
    for ingress in docs:
        size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
        assert (
            ingress["metadata"]["annotations"][
                "nginx.ingress.kubernetes.io/proxy-request-buffering"
            ]
            == "off"
        )
        for path in ingress["spec"]["rules"][0]["http"]["paths"]:
            backend = path["backend"]["service"]
            routes[path["path"]] = (backend["port"]["number"], size)
            assert backend["name"] in path["path"] or path["path"] == "/"

    limits = {
        "dataset": values["PRELABEL_DATASET_MAX_BODY"],
        "model-serving": values["PRELABEL_MODEL_SERVING_MAX_BODY"],
    }
    expected = {
        f"{spec.proxy_path}(/|$)(.*)": (
            spec.default_port,
            limits.get(spec.name, values["PRELABEL_JSON_MAX_BODY"]),
        )
        for spec in SERVICES
    }
    # The console at / with its own limit, as the stack's nginx serves it.
    expected["/"] = (CONSOLE.default_port, values["PRELABEL_CONSOLE_MAX_BODY"])
    assert routes == expected


def test_the_ingress_serves_the_console_at_the_root_unrewritten() -> None:
    docs = [
        d
        for d in yaml.safe_load_all(
            (REPO / "deploy" / "k8s" / "base" / "app" / "ingress.yaml").read_text()
        )
        if d and d["kind"] == "Ingress"
    ]
    [console] = [
        d for d in docs if any(p["path"] == "/" for p in d["spec"]["rules"][0]["http"]["paths"])
    ]
    [path] = console["spec"]["rules"][0]["http"]["paths"]

    assert path["pathType"] == "Prefix"
    assert path["backend"]["service"]["name"] == CONSOLE.name
    # No rewrite and no regex: the console's paths (and its root path, empty) as they are.
    annotations = console["metadata"]["annotations"]
    assert "nginx.ingress.kubernetes.io/rewrite-target" not in annotations
    assert "nginx.ingress.kubernetes.io/use-regex" not in annotations
    configmap = yaml.safe_load(
        (REPO / "deploy" / "k8s" / "base" / "app" / "configmap.yaml").read_text()
    )
    assert configmap["data"][CONSOLE.env_name("root_path")] == CONSOLE.proxy_path == ""
    compose = _compose()["services"]
    assert CONSOLE.env_name("root_path") not in compose[CONSOLE.name]["environment"]
