"""deploy/k8s renders (kustomize base + overlays), validates against the Kubernetes
schemas and agrees with the code.

Each overlay is rendered with ``kubectl kustomize`` (kubectl's built-in kustomize; the
tests skip where kubectl is absent) and every rendered object is validated offline by
kubernetes-validate in strict mode (a misspelt ``readinessProbe`` fails here, not in a
cluster). The worker Deployment template, which ships inside a ConfigMap, is rendered
the way the router's backend renders it and validated too.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.contract.support import REPO, SERVICE_IDS, SERVICES, Service, load_yaml_all
from trigger_router_service.adapters.kube import (
    COMPONENT,
    COMPONENT_LABEL,
    REQUIRED_PERMISSIONS,
    SERVICE_LABEL,
    render_worker_deployment,
)
from trigger_router_service.adapters.scalers import ServiceRef

pytestmark = pytest.mark.contract

K8S = REPO / "deploy" / "k8s"
OVERLAYS = ["dev", "prod"]
# A recent release bundled by kubernetes-validate; manifests use only GA APIs.
KUBERNETES_VERSION = "1.34"
NAMESPACE = "prelabel"
WORKERS = "prelabel-workers"
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl (kustomize) is not installed")


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    """Every object ``kubectl kustomize deploy/k8s/overlays/<overlay>`` prints."""
    assert KUBECTL is not None
    built = subprocess.run(
        [KUBECTL, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return tuple(doc for doc in yaml.safe_load_all(built.stdout) if doc)


def find(overlay: str, kind: str, name: str) -> dict[str, Any]:
    """The one rendered object of ``kind`` named ``name`` (generator hashes ignored)."""
    matches = [
        d
        for d in rendered(overlay)
        if d["kind"] == kind
        and (d["metadata"]["name"] == name or d["metadata"]["name"].startswith(f"{name}-"))
    ]
    assert len(matches) == 1, f"{overlay}: expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def secret_keys(name: str) -> set[str]:
    docs = load_yaml_all(K8S / "secret.example.yaml")
    return {k for d in docs if d["metadata"]["name"] == name for k in d["stringData"]}


def provided_env(overlay: str, container: dict[str, Any]) -> set[str]:
    """Variable names a container gets: its env, its ConfigMaps, its (example) Secret."""
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            names |= set(find(overlay, "ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            names |= secret_keys(source["secretRef"]["name"])
    return names


def worker_deployment(overlay: str) -> dict[str, Any]:
    """The Deployment the router would create for one service from the shipped template."""
    config = find(overlay, "ConfigMap", "prelabel-worker-template")
    template = yaml.safe_load(config["data"]["deployment.yaml"])
    return render_worker_deployment(
        template,
        name="model-serving-worker-svc-01abc",
        namespace=WORKERS,
        service=ServiceRef("svc_01ABC", "prj_1"),
        replicas=1,
    )


# --------------------------------------------------------------------------- rendering


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates_strictly(overlay: str) -> None:
    docs = [*rendered(overlay), worker_deployment(overlay)]
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            errors.append(f"{doc['kind']}/{doc['metadata']['name']} at {where}: {exc.message}")
    assert errors == []


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespaces_are_set_once_and_workers_live_apart(overlay: str) -> None:
    for doc in rendered(overlay):
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] in {NAMESPACE, WORKERS}
            continue
        expected = (
            WORKERS
            if doc["metadata"]["name"].startswith(
                ("trigger-router-workers", "prelabel-worker-config")
            )
            else NAMESPACE
        )
        assert doc["metadata"].get("namespace") == expected, doc["metadata"]["name"]
    # Written once per kustomization, not in every file.
    for path in (K8S / "base").rglob("*.yaml"):
        if path.name != "kustomization.yaml" and path.name != "worker-template.yaml":
            metadata_namespace = [
                line for line in path.read_text().splitlines() if line.startswith("  namespace:")
            ]
            assert metadata_namespace == [], path


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_replicated_services_have_disruption_budgets(overlay: str) -> None:
    budgets = [d for d in rendered(overlay) if d["kind"] == "PodDisruptionBudget"]
    for doc in rendered(overlay):
        if doc["kind"] != "Deployment" or doc["spec"].get("replicas", 1) < 2:
            continue
        pod_labels = doc["spec"]["template"]["metadata"]["labels"]
        covering = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        ]
        assert covering, f"{overlay}: {doc['metadata']['name']} has no PodDisruptionBudget"


@needs_kubectl
def test_prod_runs_triton_on_a_gpu_and_dev_on_cpu() -> None:
    prod = find("prod", "Deployment", "triton")
    assert container_of(prod)["image"].startswith("prelabel/triton-gpu:")
    assert container_of(prod)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert prod["spec"]["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    dev = find("dev", "Deployment", "triton")
    assert container_of(dev)["image"] == "prelabel/triton-cpu:dev"
    assert "nvidia.com/gpu" not in container_of(dev)["resources"].get("limits", {})


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_as_non_root(overlay: str) -> None:
    pods = [
        (d["metadata"]["name"], d["spec"]["template"]["spec"])
        for d in [*rendered(overlay), worker_deployment(overlay)]
        if d["kind"] == "Deployment"
    ]
    for name, pod in pods:
        context = pod.get("securityContext", {})
        assert context.get("runAsNonRoot") is True, name
        assert context.get("runAsUser", 0) != 0, name


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_model_repository_needs_no_read_write_many(overlay: str) -> None:
    claim = find(overlay, "PersistentVolumeClaim", "model-repository")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    # Both pods that mount it are on one node: model-serving follows Triton.
    serving = find(overlay, "Deployment", "model-serving")["spec"]["template"]["spec"]
    [term] = serving["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    triton = find(overlay, "Deployment", "triton")["spec"]["template"]["metadata"]["labels"]
    assert term["labelSelector"]["matchLabels"].items() <= triton.items()


# --------------------------------------------------------------------------- settings


@needs_kubectl
def test_configmap_and_secret_keys_are_settings_fields() -> None:
    known = set().union(*(s.env_names for s in SERVICES))
    for name in ("prelabel-config", "prelabel-worker-config"):
        data = find("dev", "ConfigMap", name)["data"]
        assert sorted(set(data) - known) == [], name
        assert all(isinstance(v, str) for v in data.values())
    for name in ("prelabel-secrets", "prelabel-worker-secrets"):
        assert sorted(secret_keys(name) - known) == [], name


@needs_kubectl
@pytest.mark.parametrize("service", SERVICES, ids=SERVICE_IDS)
def test_service_deployment_gets_its_settings_probes_and_scrape_annotations(
    service: Service,
) -> None:
    deployment = find("dev", "Deployment", service.name)
    template = deployment["spec"]["template"]
    container = container_of(deployment)
    assert sorted(service.required_env_names - provided_env("dev", container)) == []
    assert container["image"].split(":")[0] == f"prelabel/{service.name}"
    [port] = container["ports"]
    assert port["containerPort"] == service.port
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(service.port)
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    svc = find("dev", "Service", service.name)
    assert svc["spec"]["selector"].items() <= template["metadata"]["labels"].items()


# --------------------------------------------------------------------------- workers


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_router_mounts_the_worker_template_and_targets_the_workers_namespace(
    overlay: str,
) -> None:
    from trigger_router_service.settings import Settings as RouterSettings

    data = find(overlay, "ConfigMap", "prelabel-config")["data"]
    assert data["TRIGGER_ROUTER_SCALER_BACKEND"] == "kubernetes"
    assert data["TRIGGER_ROUTER_KUBE_NAMESPACE"] == WORKERS
    path = Path(data["TRIGGER_ROUTER_KUBE_WORKER_TEMPLATE"])
    pod = find(overlay, "Deployment", "trigger-router")["spec"]["template"]["spec"]
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "worker-template"]
    assert Path(mount["mountPath"]) / "deployment.yaml" == path
    [volume] = [v for v in pod["volumes"] if v["name"] == "worker-template"]
    config = find(overlay, "ConfigMap", "prelabel-worker-template")
    assert volume["configMap"]["name"] == config["metadata"]["name"]
    assert "TRIGGER_ROUTER_KUBE_WORKER_TEMPLATE" in {
        f"TRIGGER_ROUTER_{n}".upper() for n in RouterSettings.model_fields
    }


@needs_kubectl
def test_worker_deployment_from_the_template() -> None:
    from model_serving_service.settings import Settings as ServingSettings

    deployment = worker_deployment("dev")
    container = container_of(deployment)
    assert container["image"].split(":")[0] == "prelabel/model-serving-worker"
    env = {e["name"]: e for e in container["env"]}
    assert env["MODEL_SERVING_WORKER_SERVICE_ID"]["value"] == "svc_01ABC"
    assert "MODEL_SERVING_WORKER_REPLICA_ID" in env
    prefix = "MODEL_SERVING_"
    fields = {f"{prefix}{name}".upper() for name in ServingSettings.model_fields}
    provided = {e["name"] for e in container["env"]} | secret_keys("prelabel-worker-secrets")
    provided |= set(find("dev", "ConfigMap", "prelabel-worker-config")["data"])
    assert {n for n in provided if n.startswith(prefix)} <= fields
    serving = next(s for s in SERVICES if s.name == "model-serving")
    assert sorted(serving.required_env_names - provided) == []
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels[SERVICE_LABEL] == "svc_01ABC"
    assert labels[COMPONENT_LABEL] == COMPONENT
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # The model-serving API Service must not send requests to predict workers.
    api_selector = find("dev", "Service", "model-serving")["spec"]["selector"]
    assert not api_selector.items() <= labels.items()


@needs_kubectl
def test_workers_may_reach_triton_across_namespaces() -> None:
    policy = find("dev", "NetworkPolicy", "triton-internal")
    inference = next(
        r for r in policy["spec"]["ingress"] if {"http", "grpc"} & {p["port"] for p in r["ports"]}
    )
    worker_labels = worker_deployment("dev")["spec"]["template"]["metadata"]["labels"]
    sources = [
        s
        for s in inference["from"]
        if s.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
        == WORKERS
    ]
    assert sources
    assert sources[0]["podSelector"]["matchLabels"].items() <= worker_labels.items()


# --------------------------------------------------------------------------- RBAC


def rules_granted(overlay: str) -> dict[tuple[str, str, str], set[str]]:
    """(namespace, group, resource) -> verbs bound to the router's service account."""
    granted: dict[tuple[str, str, str], set[str]] = {}
    roles = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d
        for d in rendered(overlay)
        if d["kind"] == "Role"
    }
    for binding in rendered(overlay):
        if binding["kind"] == "ClusterRoleBinding":
            assert all(s.get("name") != "trigger-router" for s in binding["subjects"])
        if binding["kind"] != "RoleBinding":
            continue
        if not any(
            s == {"kind": "ServiceAccount", "name": "trigger-router", "namespace": NAMESPACE}
            for s in binding["subjects"]
        ):
            continue
        namespace = binding["metadata"]["namespace"]
        role = roles[(namespace, binding["roleRef"]["name"])]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((namespace, group, resource), set()).update(rule["verbs"])
    return granted


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_router_may_do_exactly_what_its_backend_calls_in_the_workers_namespace(
    overlay: str,
) -> None:
    expected = {
        (WORKERS, group, resource): set(verbs)
        for (group, resource), verbs in REQUIRED_PERMISSIONS.items()
    }
    assert rules_granted(overlay) == expected
    pod = find(overlay, "Deployment", "trigger-router")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "trigger-router"
    others = [
        d["metadata"]["name"]
        for d in rendered(overlay)
        if d["kind"] == "Deployment"
        and d["metadata"]["name"] != "trigger-router"
        and d["spec"]["template"]["spec"].get("serviceAccountName") == "trigger-router"
    ]
    assert others == []


@needs_kubectl
def test_triton_runs_explicit_model_control_and_is_internal() -> None:
    container = container_of(find("dev", "Deployment", "triton"))
    assert "--model-control-mode=explicit" in container["args"]
    svc = find("dev", "Service", "triton")
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert {p["port"] for p in svc["spec"]["ports"]} == {8000, 8001, 8002}


# --------------------------------------------------------------------------- console


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingress_routes_the_root_to_the_console(overlay: str) -> None:
    console = next(s for s in SERVICES if s.name == "console")
    routes = {
        path["path"]: (ingress, path)
        for ingress in rendered(overlay)
        if ingress["kind"] == "Ingress"
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    ingress, root = routes["/"]
    assert root["pathType"] == "Prefix"
    backend = root["backend"]["service"]
    assert backend == {"name": "console", "port": {"number": console.port}}
    svc = find(overlay, "Service", "console")
    assert [p["port"] for p in svc["spec"]["ports"]] == [console.port]
    assert "nginx.ingress.kubernetes.io/rewrite-target" not in ingress["metadata"]["annotations"]
    # Every API prefix still has its own route beside it.
    api = {s.name for s in SERVICES if s.name != "console"}
    assert {p.split("(")[0].removeprefix("/api/") for p in routes if p != "/"} == api


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_console_pod_is_locked_down_and_probed(overlay: str) -> None:
    deployment = find(overlay, "Deployment", "console")
    pod = deployment["spec"]["template"]["spec"]
    container = container_of(deployment)
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # Form uploads spool under /tmp, the one writable place.
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"]
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    data = find(overlay, "ConfigMap", "prelabel-config")["data"]
    assert data["CONSOLE_ROOT_PATH"] == ""
    assert data["CONSOLE_COOKIE_SECURE"] == ("false" if overlay == "dev" else "true")
    # Sessions survive a hop to another replica: one secret for all of them.
    assert "CONSOLE_SESSION_SECRET" in secret_keys("prelabel-secrets")
