"""deploy/k8s validates against the Kubernetes schemas and agrees with the code.

kubernetes-validate carries the API schemas, so this runs offline; strict mode
rejects unknown fields (a misspelt ``readinessProbe`` fails here, not in a cluster).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.contract.support import REPO, SERVICE_IDS, SERVICES, Service, load_yaml, load_yaml_all

pytestmark = pytest.mark.contract

K8S = REPO / "deploy" / "k8s"
# A recent release bundled by kubernetes-validate; manifests use only GA APIs.
KUBERNETES_VERSION = "1.34"
NAMESPACE = "prelabel"

MANIFEST_FILES = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
RESOURCES = [(path, doc) for path in MANIFEST_FILES for doc in load_yaml_all(path)]


def resource_id(item: tuple[Path, dict[str, Any]]) -> str:
    path, doc = item
    return f"{path.name}:{doc['kind']}/{doc['metadata']['name']}"


def find(kind: str, name: str) -> dict[str, Any]:
    """The one resource of ``kind`` named ``name``."""
    matches = [d for _, d in RESOURCES if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    resource: dict[str, Any] = matches[0]
    return resource


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def provided_env(container: dict[str, Any]) -> set[str]:
    """Variable names a container gets: its env plus the ConfigMap and Secret it loads."""
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            names |= set(find("ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            names |= set(find("Secret", source["secretRef"]["name"])["stringData"])
    return names


def test_there_are_manifests() -> None:
    kinds = {doc["kind"] for _, doc in RESOURCES}
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "Role"} <= kinds


@pytest.mark.parametrize("item", RESOURCES, ids=[resource_id(r) for r in RESOURCES])
def test_manifest_validates_strictly(item: tuple[Path, dict[str, Any]]) -> None:
    _, doc = item
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{resource_id(item)} at {where}: {exc.message}", pytrace=False)


@pytest.mark.parametrize("item", RESOURCES, ids=[resource_id(r) for r in RESOURCES])
def test_resources_live_in_the_prelabel_namespace(item: tuple[Path, dict[str, Any]]) -> None:
    _, doc = item
    if doc["kind"] == "Namespace":
        assert doc["metadata"]["name"] == NAMESPACE
    else:
        assert doc["metadata"].get("namespace") == NAMESPACE


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    expected = {p.name for p in MANIFEST_FILES if not p.name.endswith(".example.yaml")}
    assert listed == expected
    assert kustomization["namespace"] == NAMESPACE
    images = {i["name"] for i in kustomization["images"]}
    assert images == {f"prelabel/{s.name}" for s in SERVICES}


def test_kustomize_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    built = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert built.returncode == 0, built.stderr
    docs = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    listed = sum(
        len(load_yaml_all(K8S / name))
        for name in load_yaml(K8S / "kustomization.yaml")["resources"]
    )
    assert len(docs) == listed


# --------------------------------------------------------------------------- settings


def test_configmap_keys_are_settings_fields() -> None:
    data = find("ConfigMap", "prelabel-config")["data"]
    known = set().union(*(s.env_names for s in SERVICES))
    assert sorted(set(data) - known) == []
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"


def test_secret_keys_are_settings_fields() -> None:
    data = find("Secret", "prelabel-secrets")["stringData"]
    known = set().union(*(s.env_names for s in SERVICES))
    assert sorted(set(data) - known) == []


@pytest.mark.parametrize("service", SERVICES, ids=SERVICE_IDS)
def test_service_gets_every_required_setting(service: Service) -> None:
    container = container_of(find("Deployment", service.name))
    env = provided_env(container)
    assert sorted(service.required_env_names - env) == []
    data = find("ConfigMap", "prelabel-config")["data"]
    assert data[f"{service.prefix}HTTP_HOST"] == "0.0.0.0"
    assert int(data.get(f"{service.prefix}HTTP_PORT", service.port)) == service.port


# --------------------------------------------------------------------------- services


@pytest.mark.parametrize("service", SERVICES, ids=SERVICE_IDS)
def test_service_deployment_probes_and_scrape_annotations(service: Service) -> None:
    deployment = find("Deployment", service.name)
    template = deployment["spec"]["template"]
    container = container_of(deployment)
    assert container["image"].split(":")[0] == f"prelabel/{service.name}"
    [port] = container["ports"]
    assert port["containerPort"] == service.port
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in (port["name"], service.port)
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(service.port)
    assert annotations["prometheus.io/path"] == "/metrics"
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    assert template["spec"]["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("service", SERVICES, ids=SERVICE_IDS)
def test_service_object_selects_the_api_pods(service: Service) -> None:
    svc = find("Service", service.name)
    deployment = find("Deployment", service.name)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = svc["spec"]["selector"]
    assert selector.items() <= pod_labels.items()
    assert selector.items() <= deployment["spec"]["selector"]["matchLabels"].items()
    [port] = svc["spec"]["ports"]
    assert port["port"] == service.port
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_predict_worker_template_starts_at_zero_replicas() -> None:
    from model_serving_service.settings import Settings as ServingSettings
    from trigger_router_service.settings import Settings as RouterSettings

    pattern = RouterSettings.model_fields["kube_deployment_pattern"].default
    template = find("Deployment", pattern.format(service_id="template"))
    assert template["spec"]["replicas"] == 0
    container = container_of(template)
    worker_env = {e["name"] for e in container.get("env", [])}
    prefix = ServingSettings.model_config.get("env_prefix", "")
    assert {f"{prefix}WORKER_SERVICE_ID", f"{prefix}WORKER_REPLICA_ID"} <= worker_env
    fields = {f"{prefix}{name}".upper() for name in ServingSettings.model_fields}
    assert {n for n in worker_env if n.startswith(prefix)} <= fields
    assert container["image"].split(":")[0] == "prelabel/model-serving"
    serving = next(s for s in SERVICES if s.name == "model-serving")
    assert sorted(serving.required_env_names - provided_env(container)) == []
    # The model-serving API Service must not send requests to predict workers.
    api_selector = find("Service", "model-serving")["spec"]["selector"]
    worker_labels = template["spec"]["template"]["metadata"]["labels"]
    assert not api_selector.items() <= worker_labels.items()


# --------------------------------------------------------------------------- RBAC


def test_router_role_may_read_deployments_and_patch_their_scale() -> None:
    rules = find("Role", "trigger-router-scaler")["rules"]

    def verbs(resource: str) -> set[str]:
        return {
            verb
            for rule in rules
            if "apps" in rule["apiGroups"] and resource in rule["resources"]
            for verb in rule["verbs"]
        }

    assert {"get", "patch"} <= verbs("deployments/scale")
    assert {"get", "list"} <= verbs("deployments")
    # Least privilege: the router never creates, deletes or edits Deployments.
    assert not verbs("deployments") & {"create", "delete", "update", "patch", "*"}
    assert all("*" not in rule["resources"] and "*" not in rule["verbs"] for rule in rules)


def test_router_runs_as_the_bound_service_account() -> None:
    binding = find("RoleBinding", "trigger-router-scaler")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "trigger-router-scaler",
    }
    assert {"kind": "ServiceAccount", "name": "trigger-router", "namespace": NAMESPACE} in binding[
        "subjects"
    ]
    find("ServiceAccount", "trigger-router")
    pod = find("Deployment", "trigger-router")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "trigger-router"
    others = [
        doc["metadata"]["name"]
        for _, doc in RESOURCES
        if doc["kind"] == "Deployment"
        and doc["metadata"]["name"] != "trigger-router"
        and doc["spec"]["template"]["spec"].get("serviceAccountName") == "trigger-router"
    ]
    assert others == []


# --------------------------------------------------------------------------- Triton


def test_triton_runs_explicit_model_control_and_is_internal() -> None:
    container = container_of(find("Deployment", "triton"))
    assert "--model-control-mode=explicit" in container["args"]
    svc = find("Service", "triton")
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert {p["port"] for p in svc["spec"]["ports"]} == {8000, 8001, 8002}
    policy = find("NetworkPolicy", "triton-internal")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= (
        find("Deployment", "triton")["spec"]["template"]["metadata"]["labels"].items()
    )
    data = find("ConfigMap", "prelabel-config")["data"]
    assert data["MODEL_SERVING_TRITON_GRPC_URL"] == "triton:8001"
    assert data["MODEL_SERVING_TRITON_HTTP_URL"] == "triton:8000"


def test_only_model_serving_pods_may_call_triton() -> None:
    policy = find("NetworkPolicy", "triton-internal")
    inference_rule = next(
        r for r in policy["spec"]["ingress"] if {"http", "grpc"} & {p["port"] for p in r["ports"]}
    )
    [source] = inference_rule["from"]
    client_labels = source["podSelector"]["matchLabels"]
    for _, doc in RESOURCES:
        if doc["kind"] != "Deployment":
            continue
        labels = doc["spec"]["template"]["metadata"]["labels"]
        is_client = client_labels.items() <= labels.items()
        serving = labels.get("app.kubernetes.io/name") == "model-serving"
        assert is_client == serving, doc["metadata"]["name"]
