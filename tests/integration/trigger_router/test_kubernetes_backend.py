"""The kubernetes scaler backend at the HTTP level, against a fake API server on a
loopback port (no cluster here), and the RBAC manifest it relies on."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from common.testing.servers import serve_app
from common.testing.waits import wait_until
from tests.integration.trigger_router.conftest import RouterFactory, item_snapshot
from tests.integration.trigger_router.fake_kube_api import FakeKubeApi
from trigger_router_service.adapters.kube import MERGE_PATCH, REQUIRED_PERMISSIONS, KubernetesScaler
from trigger_router_service.adapters.scalers import ScalerError, ServiceRef
from trigger_router_service.settings import Settings

RBAC = Path(__file__).resolve().parents[3] / "deploy" / "k8s" / "rbac.yaml"
ROUTER_DEPLOYMENT = RBAC.parent / "trigger-router.yaml"
TOKEN = "sa-token-for-tests"
NAMESPACE = "prelabel"


@pytest.fixture
async def kube_api() -> AsyncIterator[tuple[FakeKubeApi, str]]:
    fake = FakeKubeApi(token=TOKEN)
    async with serve_app(fake.app()) as url:
        yield fake, url


def _settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "amqp_url": "amqp://guest:guest@127.0.0.1:5672/",
        "database_url": "postgresql://postgres@127.0.0.1:5432/unused",
        "scaler_backend": "kubernetes",
        "kube_api_url": url,
        "kube_token": TOKEN,
        "kube_namespace": NAMESPACE,
    }
    values.update(overrides)
    return Settings(**values)


async def test_scale_patches_the_deployments_scale_subresource(
    kube_api: tuple[FakeKubeApi, str],
) -> None:
    fake, url = kube_api
    fake.add(NAMESPACE, "model-serving-worker-svc-01abc")
    fake.add(NAMESPACE, "unrelated")
    scaler = await KubernetesScaler.from_settings(_settings(url))
    service = ServiceRef("svc_01ABC", "prj_1")
    try:
        await scaler.scale(service, 3)
        actual = await scaler.actual([service, ServiceRef("svc_other", "prj_1")])
        await scaler.scale(service, 0)
        after = await scaler.actual([service])
    finally:
        await scaler.close()

    patch = fake.patches()[0]
    assert patch.path == (
        f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/model-serving-worker-svc-01abc/scale"
    )
    assert patch.content_type.startswith(MERGE_PATCH)
    assert patch.body == {"spec": {"replicas": 3}}
    assert patch.authorization == f"Bearer {TOKEN}"
    assert actual == {"svc_01ABC": 3, "svc_other": 0}
    assert after == {"svc_01ABC": 0}
    assert scaler.requested("svc_01ABC") == 0
    assert [r.method for r in fake.requests] == ["PATCH", "GET", "PATCH", "GET"]


async def test_api_errors_become_scaler_errors(kube_api: tuple[FakeKubeApi, str]) -> None:
    fake, url = kube_api
    missing = await KubernetesScaler.from_settings(_settings(url))
    wrong_token = await KubernetesScaler.from_settings(_settings(url, kube_token="nope"))
    fake.add(NAMESPACE, "model-serving-worker-svc-1")
    try:
        with pytest.raises(ScalerError, match="404"):
            await missing.scale(ServiceRef("svc_gone", "p"), 1)
        with pytest.raises(ScalerError, match="401"):
            await wrong_token.scale(ServiceRef("svc_1", "p"), 1)
        assert missing.requested("svc_gone") is None
    finally:
        await missing.close()
        await wrong_token.close()


async def test_the_autoscaler_drives_the_kubernetes_backend(
    kube_api: tuple[FakeKubeApi, str], router_factory: RouterFactory
) -> None:
    fake, url = kube_api
    async with router_factory(
        autoscaler_enabled=True,
        reconcile_seconds=0.25,
        scaler_backend="kubernetes",
        kube_api_url=url,
        kube_token=TOKEN,
        kube_namespace=NAMESPACE,
        kube_deployment_pattern="predict-{service_id}",
    ) as router:
        service = await router.deploy(cooldown_seconds=0.5)
        deployment = f"predict-{service.replace('_', '-')}"
        fake.add(NAMESPACE, deployment)
        await router.create_trigger(service)

        started = time.monotonic()
        await router.item_event(item_snapshot(router.project_id))

        async def replicas(n: int) -> bool:
            return fake.deployments[(NAMESPACE, deployment)] == n

        await wait_until(lambda: replicas(1), timeout=10, message="scaled to 1")
        woke = time.monotonic() - started
        await router.predicts(service, 1)
        await wait_until(lambda: replicas(0), timeout=10, message="scaled back to 0")
    bodies = [p.body for p in fake.patches() if p.path.endswith(f"/{deployment}/scale")]
    assert {"spec": {"replicas": 1}} in bodies
    assert bodies[-1] == {"spec": {"replicas": 0}}
    assert woke < 1.0, woke


# --------------------------------------------------------------------------- RBAC


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_rbac_manifest_validates_and_grants_what_the_backend_calls() -> None:
    docs = _docs(RBAC)
    for doc in docs:
        kubernetes_validate.validate(doc, "1.34", strict=True)
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Role"}
    pod = next(d for d in _docs(ROUTER_DEPLOYMENT) if d["kind"] == "Deployment")["spec"][
        "template"
    ]["spec"]
    account = pod["serviceAccountName"]
    bound = [
        roles[b["roleRef"]["name"]]
        for b in docs
        if b["kind"] == "RoleBinding"
        and b["roleRef"]["kind"] == "Role"
        and any(s["kind"] == "ServiceAccount" and s["name"] == account for s in b["subjects"])
    ]
    assert bound, f"no Role bound to the router's service account {account!r}"
    granted: dict[tuple[str, str], set[str]] = {}
    for role in bound:
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((group, resource), set()).update(rule["verbs"])
    for (group, resource), verbs in REQUIRED_PERMISSIONS.items():
        assert verbs <= granted.get((group, resource), set()), (group, resource, verbs)
