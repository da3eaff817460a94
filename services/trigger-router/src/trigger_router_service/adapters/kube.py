"""Kubernetes scaler backend: patches the scale subresource of each model service's
predict-worker Deployment through the official (asyncio) kubernetes client.

RBAC (deploy/k8s/rbac.yaml) must grant exactly :data:`REQUIRED_PERMISSIONS`:
``patch`` on ``deployments/scale`` to scale, ``list`` on ``deployments`` to read how
many replicas are ready.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from trigger_router_service.adapters.scalers import ScalerError, ServiceRef
from trigger_router_service.domain.scaling import deployment_name

if TYPE_CHECKING:
    from trigger_router_service.settings import Settings

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
"""The client's default for this call is JSON Patch, which wants a list of operations;
a ``{"spec": {"replicas": n}}`` body is a merge patch and must say so."""

REQUIRED_PERMISSIONS: dict[tuple[str, str], frozenset[str]] = {
    ("apps", "deployments/scale"): frozenset({"patch"}),
    ("apps", "deployments"): frozenset({"list"}),
}
"""(API group, resource) -> verbs this backend calls."""


class KubernetesScaler:
    """Scales ``Deployment/<pattern % service id>`` in one namespace."""

    name = "kubernetes"

    def __init__(self, api_client: Any, *, namespace: str, pattern: str) -> None:
        from kubernetes.aio.client import AppsV1Api

        self._client = api_client
        self._apps = AppsV1Api(api_client)
        self._namespace = namespace
        self._pattern = pattern
        self._requested: dict[str, int] = {}

    @classmethod
    async def from_settings(cls, settings: Settings) -> KubernetesScaler:
        """Configure from ``kube_api_url``/``kube_token``, else in-cluster, else kubeconfig."""
        from kubernetes.aio import config
        from kubernetes.aio.client import ApiClient, Configuration

        configuration = Configuration()
        if settings.kube_api_url:
            configuration.host = settings.kube_api_url
            configuration.verify_ssl = settings.kube_verify_ssl
            if settings.kube_token:
                configuration.api_key = {"BearerToken": settings.kube_token}
                configuration.api_key_prefix = {"BearerToken": "Bearer"}
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except config.ConfigException:
                await config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return cls(
            ApiClient(configuration),
            namespace=settings.kube_namespace,
            pattern=settings.kube_deployment_pattern,
        )

    def deployment(self, service_id: str) -> str:
        """The Deployment name of a service."""
        return deployment_name(self._pattern, service_id)

    def requested(self, service_id: str) -> int | None:
        """The count last patched by this process."""
        return self._requested.get(service_id)

    async def scale(self, service: ServiceRef, replicas: int) -> None:
        """``PATCH .../deployments/<name>/scale`` with ``{"spec": {"replicas": n}}``."""
        from kubernetes.aio.client.exceptions import ApiException

        name = self.deployment(service.service_id)
        try:
            await self._apps.patch_namespaced_deployment_scale(
                name,
                self._namespace,
                {"spec": {"replicas": replicas}},
                _content_type=MERGE_PATCH,
            )
        except ApiException as exc:
            raise ScalerError(
                f"scaling deployment {self._namespace}/{name} to {replicas} failed: "
                f"{exc.status} {exc.reason}"
            ) from exc
        except OSError as exc:
            raise ScalerError(f"Kubernetes API unreachable: {exc}") from exc
        self._requested[service.service_id] = replicas

    async def actual(self, services: Sequence[ServiceRef]) -> dict[str, int]:
        """Ready replicas per service, from one list of the namespace's Deployments."""
        from kubernetes.aio.client.exceptions import ApiException

        try:
            listing = await self._apps.list_namespaced_deployment(self._namespace)
        except ApiException as exc:
            raise ScalerError(f"listing deployments failed: {exc.status} {exc.reason}") from exc
        except OSError as exc:
            raise ScalerError(f"Kubernetes API unreachable: {exc}") from exc
        ready = {
            d.metadata.name: (d.status.ready_replicas or 0) if d.status else 0
            for d in listing.items
            if d.metadata is not None
        }
        return {s.service_id: ready.get(self.deployment(s.service_id), 0) for s in services}

    async def sync(self) -> None:
        """Nothing to repair: the Deployment controller replaces crashed pods."""

    async def step_down(self) -> None:
        """Forget what was patched: the next term re-applies the stored counts once."""
        self._requested.clear()

    async def close(self) -> None:
        """Close the HTTP session; the Deployments keep their replica counts."""
        await self._client.close()
