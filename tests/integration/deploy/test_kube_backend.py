"""The router's kubernetes backend over real HTTP against an API server stand-in that
enforces the repository's Role (deploy/k8s, rendered by kustomize): one worker
Deployment per model service made from the shipped template in the workers' namespace,
scaled through the scale subresource, deleted once idle at zero; anything outside the
Role answers 403. The stand-in checks request shapes and authorisation only; no
controller or cluster runs here."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.testing.servers import serve_app
from common.testing.waits import wait_until
from tests.contract.test_k8s import WORKERS, find, rules_granted
from tests.integration.deploy.fake_kube_api import FakeKubeApi
from tests.integration.trigger_router.conftest import (  # noqa: F401 (fixture)
    RouterFactory,
    item_snapshot,
    router_factory,
)
from trigger_router_service.adapters.kube import (
    MERGE_PATCH,
    SERVICE_LABEL,
    TEMPLATE_HASH,
    KubernetesScaler,
)
from trigger_router_service.adapters.scalers import ScalerError, ServiceRef
from trigger_router_service.settings import Settings

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize)")

ROUTER_TOKEN = "router-sa-token"
SERVICE = ServiceRef("svc_01ABC", "prj_1")
DEPLOYMENT = "model-serving-worker-svc-01abc"


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """The worker template as the router's pod sees it (the dev overlay's ConfigMap)."""
    path = tmp_path / "deployment.yaml"
    path.write_text(find("dev", "ConfigMap", "prelabel-worker-template")["data"]["deployment.yaml"])
    return path


@pytest.fixture
async def kube_api() -> AsyncIterator[tuple[FakeKubeApi, str]]:
    fake = FakeKubeApi(tokens={ROUTER_TOKEN: rules_granted("dev")})
    async with serve_app(fake.app()) as url:
        yield fake, url


def _settings(url: str, template: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "amqp_url": "amqp://guest:guest@127.0.0.1:5672/",
        "database_url": "postgresql://postgres@127.0.0.1:5432/unused",
        "scaler_backend": "kubernetes",
        "kube_api_url": url,
        "kube_token": ROUTER_TOKEN,
        "kube_namespace": WORKERS,
        "kube_worker_template": template,
    }
    values.update(overrides)
    return Settings(**values)


async def test_scale_from_zero_creates_the_deployment_then_scales_it(
    kube_api: tuple[FakeKubeApi, str], template: Path
) -> None:
    fake, url = kube_api
    scaler = await KubernetesScaler.from_settings(_settings(url, template))
    try:
        await scaler.scale(SERVICE, 2)
        made = fake.deployments[(WORKERS, DEPLOYMENT)]
        assert made["metadata"]["labels"][SERVICE_LABEL] == SERVICE.service_id
        container = made["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["MODEL_SERVING_WORKER_SERVICE_ID"] == SERVICE.service_id
        assert fake.replicas(WORKERS, DEPLOYMENT) == 2
        assert await scaler.actual([SERVICE, ServiceRef("svc_other", "prj_1")]) == {
            SERVICE.service_id: 2,
            "svc_other": 0,
        }
        await scaler.scale(SERVICE, 0)
        assert fake.replicas(WORKERS, DEPLOYMENT) == 0
        await scaler.sync()  # no pod left: the idle Deployment goes
        assert (WORKERS, DEPLOYMENT) not in fake.deployments
        await scaler.scale(SERVICE, 0)  # nothing to do, nothing created
        assert (WORKERS, DEPLOYMENT) not in fake.deployments
    finally:
        await scaler.close()
    assert [
        r.method for r in fake.requests if r.resource == "deployments" and r.method != "GET"
    ] == [
        "POST",
        "DELETE",
    ]
    scales = [r for r in fake.requests if r.resource == "deployments/scale"]
    assert {r.content_type.split(";")[0] for r in scales} == {MERGE_PATCH}
    assert [r.body for r in scales] == [{"spec": {"replicas": 2}}, {"spec": {"replicas": 0}}]
    assert fake.forbidden() == []


def _set_worker_image(template: Path, image: str) -> None:
    edited = yaml.safe_load(template.read_text())
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = image
    template.write_text(yaml.safe_dump(edited))


async def test_a_changed_template_updates_the_deployment_at_the_next_scale_up(
    kube_api: tuple[FakeKubeApi, str], template: Path
) -> None:
    fake, url = kube_api
    scaler = await KubernetesScaler.from_settings(_settings(url, template))
    try:
        await scaler.scale(SERVICE, 1)
        first = fake.deployments[(WORKERS, DEPLOYMENT)]["metadata"]["annotations"][TEMPLATE_HASH]
        _set_worker_image(template, "prelabel/model-serving-worker:0.2.0")
        await scaler.scale(SERVICE, 2)
        now = fake.deployments[(WORKERS, DEPLOYMENT)]
        assert now["metadata"]["annotations"][TEMPLATE_HASH] != first
        assert now["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":0.2.0")
        assert fake.replicas(WORKERS, DEPLOYMENT) == 2
    finally:
        await scaler.close()
    assert [r.method for r in fake.requests if r.method == "PUT"] == ["PUT"]


async def test_the_role_keeps_the_router_off_other_deployments(
    kube_api: tuple[FakeKubeApi, str], template: Path
) -> None:
    fake, url = kube_api
    fake.add("prelabel", "triton", 1)
    fake.add("prelabel", "dataset", 2)
    # The backend pointed at the services' namespace (a misconfiguration or an attacker
    # controlling settings): every call is refused, nothing changes.
    scaler = await KubernetesScaler.from_settings(
        _settings(url, template, kube_namespace="prelabel", kube_deployment_pattern="{service_id}")
    )
    try:
        with pytest.raises(ScalerError, match="403"):
            await scaler.scale(ServiceRef("triton", "prj_1"), 0)
        with pytest.raises(ScalerError, match="403"):
            await scaler.actual([SERVICE])
        with pytest.raises(ScalerError, match="403"):
            await scaler.sync()
    finally:
        await scaler.close()
    assert fake.replicas("prelabel", "triton") == 1
    assert fake.replicas("prelabel", "dataset") == 2
    assert {r.namespace for r in fake.forbidden()} == {"prelabel"}
    assert all(r.status == 403 for r in fake.requests)


async def test_a_bad_template_is_a_scaler_error(
    kube_api: tuple[FakeKubeApi, str], tmp_path: Path
) -> None:
    _, url = kube_api
    broken = tmp_path / "deployment.yaml"
    broken.write_text("kind: Service\n")
    scaler = await KubernetesScaler.from_settings(_settings(url, broken))
    try:
        with pytest.raises(ScalerError, match="must be a Deployment"):
            await scaler.scale(SERVICE, 1)
    finally:
        await scaler.close()


async def test_the_autoscaler_drives_the_kubernetes_backend(
    kube_api: tuple[FakeKubeApi, str],
    template: Path,
    router_factory: RouterFactory,  # noqa: F811
) -> None:
    fake, url = kube_api
    async with router_factory(
        autoscaler_enabled=True,
        reconcile_seconds=0.25,
        scaler_backend="kubernetes",
        kube_api_url=url,
        kube_token=ROUTER_TOKEN,
        kube_namespace=WORKERS,
        kube_worker_template=template,
        kube_deployment_pattern="predict-{service_id}",
    ) as router:
        service = await router.deploy(cooldown_seconds=0.5)
        deployment = f"predict-{service.lower().replace('_', '-')}"
        await router.create_trigger(service)

        started = time.monotonic()
        await router.item_event(item_snapshot(router.project_id))

        async def replicas(n: int | None) -> bool:
            return fake.replicas(WORKERS, deployment) == n

        await wait_until(lambda: replicas(1), timeout=10, message="created and scaled to 1")
        woke = time.monotonic() - started
        await router.predicts(service, 1)
        await wait_until(lambda: replicas(None), timeout=15, message="idle deployment deleted")
    assert woke < 1.5, woke
    assert fake.forbidden() == []
