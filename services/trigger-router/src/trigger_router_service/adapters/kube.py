"""Kubernetes scaler backend: one predict-worker Deployment per model service, made from
a template (a ConfigMap mounted into the router), in a namespace of the workers' own,
scaled through the scale subresource, through the official (asyncio) kubernetes client.

- scale to N > 0: the Deployment is created from the template when missing, replaced
  when the template changed since it was made (``prelabel.io/template-hash``), then
  ``PATCH .../deployments/<name>/scale``.
- scale to 0: the scale subresource to 0; the worker pods drain (SIGTERM, the worker's
  grace period), and ``sync`` deletes the Deployment once no pod is left, so an idle
  service leaves nothing behind and the next scale-up starts from the current template.

The Role (deploy/k8s/base/workers/rbac.yaml) grants exactly :data:`REQUIRED_PERMISSIONS` in the
workers' namespace, which holds nothing but these Deployments: RBAC cannot limit
``create`` to names, so the namespace is the boundary.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from trigger_router_service.adapters.scalers import WORKER_SERVICE_ID, ScalerError, ServiceRef
from trigger_router_service.domain.scaling import deployment_name

if TYPE_CHECKING:
    from trigger_router_service.settings import Settings

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
"""The client's default for patches is JSON Patch, which wants a list of operations;
a ``{"spec": {"replicas": n}}`` body is a merge patch and must say so."""

COMPONENT_LABEL = "app.kubernetes.io/component"
COMPONENT = "predict-worker"
SERVICE_LABEL = "prelabel.io/service-id"
PROJECT_LABEL = "prelabel.io/project-id"
TEMPLATE_HASH = "prelabel.io/template-hash"
WORKER_CONTAINER = "worker"

REQUIRED_PERMISSIONS: dict[tuple[str, str], frozenset[str]] = {
    ("apps", "deployments"): frozenset({"get", "list", "create", "update", "delete"}),
    ("apps", "deployments/scale"): frozenset({"patch"}),
}
"""(API group, resource) -> verbs this backend calls, in the workers' namespace only."""


def template_hash(template: Mapping[str, Any]) -> str:
    """A short digest of the template, to tell whether a Deployment is up to date."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def render_worker_deployment(
    template: Mapping[str, Any],
    *,
    name: str,
    namespace: str,
    service: ServiceRef,
    replicas: int,
) -> dict[str, Any]:
    """The Deployment of one model service from the template: its name, namespace and
    replica count, selector and pod labels naming the service, and the worker
    container's ``MODEL_SERVING_WORKER_SERVICE_ID``. Everything else (image, resources,
    probes, securityContext, the other settings) comes from the template as written."""
    if template.get("kind") != "Deployment":
        raise ScalerError("the worker template must be a Deployment")
    body: dict[str, Any] = copy.deepcopy(dict(template))
    selector = {COMPONENT_LABEL: COMPONENT, SERVICE_LABEL: service.service_id}
    metadata = body.setdefault("metadata", {})
    metadata.pop("resourceVersion", None)
    metadata.update(name=name, namespace=namespace)
    metadata.setdefault("labels", {}).update(selector, **{PROJECT_LABEL: service.project_id})
    metadata.setdefault("annotations", {})[TEMPLATE_HASH] = template_hash(template)
    spec = body.setdefault("spec", {})
    spec["replicas"] = replicas
    spec["selector"] = {"matchLabels": dict(selector)}
    pod = spec.setdefault("template", {})
    pod.setdefault("metadata", {}).setdefault("labels", {}).update(selector)
    containers = pod.setdefault("spec", {}).get("containers") or []
    worker = next((c for c in containers if c.get("name") == WORKER_CONTAINER), None)
    if worker is None:
        raise ScalerError(f"the worker template has no container named {WORKER_CONTAINER!r}")
    env = [e for e in worker.get("env", []) if e.get("name") != WORKER_SERVICE_ID]
    env.append({"name": WORKER_SERVICE_ID, "value": service.service_id})
    worker["env"] = env
    return body


def load_template(path: Path) -> dict[str, Any]:
    """The worker Deployment template (YAML or JSON)."""
    try:
        template = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ScalerError(f"cannot read the worker template {path}: {exc}") from exc
    if not isinstance(template, dict):
        raise ScalerError(f"the worker template {path} is not a mapping")
    return template


class KubernetesScaler:
    """Manages ``Deployment/<pattern % service id>`` in the workers' namespace."""

    name = "kubernetes"

    def __init__(self, api_client: Any, *, namespace: str, pattern: str, template: Path) -> None:
        from kubernetes.aio.client import AppsV1Api

        self._client = api_client
        self._apps = AppsV1Api(api_client)
        self._namespace = namespace
        self._pattern = pattern
        self._template = template
        self._requested: dict[str, int] = {}
        self._lock = asyncio.Lock()

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
            template=settings.kube_worker_template,
        )

    def deployment(self, service_id: str) -> str:
        """The Deployment name of a service."""
        return deployment_name(self._pattern, service_id)

    def requested(self, service_id: str) -> int | None:
        """The count last applied by this process."""
        return self._requested.get(service_id)

    async def scale(self, service: ServiceRef, replicas: int) -> None:
        """Create or update the service's Deployment when it must run, then set its scale."""
        name = self.deployment(service.service_id)
        async with self._lock:
            existing = await self._call(
                f"reading deployment {name}",
                self._apps.read_namespaced_deployment(name, self._namespace),
                missing_ok=True,
            )
            if existing is None and replicas == 0:
                self._requested[service.service_id] = 0
                return
            if replicas > 0:
                template = load_template(self._template)
                body = render_worker_deployment(
                    template,
                    name=name,
                    namespace=self._namespace,
                    service=service,
                    replicas=replicas,
                )
                if existing is None:
                    await self._call(
                        f"creating deployment {name}",
                        # The client sends a dict body as it is: the template stays plain YAML.
                        self._apps.create_namespaced_deployment(self._namespace, body),  # type: ignore[arg-type]
                    )
                    log.info("worker deployment created", extra={"deployment": name})
                elif _annotation(existing, TEMPLATE_HASH) != template_hash(template):
                    body["metadata"]["resourceVersion"] = existing.metadata.resource_version
                    await self._call(
                        f"updating deployment {name}",
                        self._apps.replace_namespaced_deployment(name, self._namespace, body),  # type: ignore[arg-type]
                    )
                    log.info("worker deployment updated", extra={"deployment": name})
            await self._call(
                f"scaling deployment {name} to {replicas}",
                self._apps.patch_namespaced_deployment_scale(
                    name,
                    self._namespace,
                    {"spec": {"replicas": replicas}},
                    _content_type=MERGE_PATCH,
                ),
            )
            self._requested[service.service_id] = replicas

    async def actual(self, services: Sequence[ServiceRef]) -> dict[str, int]:
        """Ready replicas per service, from one list of the worker Deployments."""
        ready: dict[str, int] = {}
        for d in await self._workers():
            ready[d.metadata.name] = (d.status.ready_replicas or 0) if d.status else 0
        return {s.service_id: ready.get(self.deployment(s.service_id), 0) for s in services}

    async def sync(self) -> None:
        """Delete the Deployments scaled to 0 whose pods have all gone (drained)."""
        async with self._lock:
            for d in await self._workers():
                service_id = (d.metadata.labels or {}).get(SERVICE_LABEL)
                if (self._requested.get(service_id or "") or 0) > 0:
                    continue
                if (d.spec.replicas or 0) > 0 or (d.status and (d.status.replicas or 0) > 0):
                    continue
                await self._call(
                    f"deleting deployment {d.metadata.name}",
                    self._apps.delete_namespaced_deployment(d.metadata.name, self._namespace),
                    missing_ok=True,
                )
                log.info("idle worker deployment deleted", extra={"deployment": d.metadata.name})

    async def step_down(self) -> None:
        """Forget what was applied: the next term re-applies the stored counts once."""
        self._requested.clear()

    async def close(self) -> None:
        """Close the HTTP session; the Deployments keep their replica counts."""
        await self._client.close()

    async def _workers(self) -> list[Any]:
        listing = await self._call(
            "listing worker deployments",
            self._apps.list_namespaced_deployment(
                self._namespace, label_selector=f"{COMPONENT_LABEL}={COMPONENT}"
            ),
        )
        return [d for d in listing.items if d.metadata is not None]

    @staticmethod
    async def _call(what: str, call: Any, *, missing_ok: bool = False) -> Any:
        from kubernetes.aio.client.exceptions import ApiException

        try:
            return await call
        except ApiException as exc:
            if missing_ok and exc.status == 404:
                return None
            raise ScalerError(f"{what} failed: {exc.status} {exc.reason}") from exc
        except OSError as exc:
            raise ScalerError(f"Kubernetes API unreachable while {what}: {exc}") from exc


def _annotation(deployment: Any, key: str) -> str | None:
    annotations = (deployment.metadata.annotations if deployment.metadata else None) or {}
    value = annotations.get(key)
    return str(value) if value is not None else None
