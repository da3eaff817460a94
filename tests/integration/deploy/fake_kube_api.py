"""A stand-in for kube-apiserver that speaks the Deployment paths the router's kubernetes
backend calls and enforces RBAC from the repository's own Role manifests.

No cluster runs here, so this checks the request shapes (paths, verbs, content types,
bodies) and the authorisation, not a real controller: the Deployment "controller" below
only copies ``spec.replicas`` into ``status`` (``ready`` is set by the test). Every
request is checked against the rules bound to the caller's service account (the bearer
token names it); anything else answers 403 ``Forbidden`` like the real server, and is
recorded, so a test can show the router cannot touch Deployments outside its Role.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

Rules = dict[tuple[str, str, str], set[str]]
"""(namespace, API group, resource) -> verbs."""


@dataclass
class Recorded:
    """One request as the fake server saw it, with its answer's status."""

    method: str
    path: str
    verb: str
    namespace: str
    resource: str
    content_type: str
    body: Any
    status: int = 0


def _status(code: int, reason: str, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        },
        status_code=code,
    )


def _matches(selector: str | None, labels: dict[str, str]) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


@dataclass
class FakeKubeApi:
    """Deployments per (namespace, name) and the requests received."""

    tokens: dict[str, Rules]
    """Bearer token -> the rules its service account is bound to."""
    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    auto_ready: bool = True
    """Whether ``readyReplicas`` follows ``spec.replicas`` at once."""
    _version: int = 1

    def add(self, namespace: str, name: str, replicas: int = 0) -> None:
        """A Deployment that someone else made (Triton, dataset ...)."""
        self.deployments[(namespace, name)] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": {}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
        }
        self._settle(namespace, name)

    def replicas(self, namespace: str, name: str) -> int | None:
        found = self.deployments.get((namespace, name))
        return None if found is None else int(found["spec"].get("replicas", 1))

    def forbidden(self) -> list[Recorded]:
        return [r for r in self.requests if r.status == 403]

    def _settle(self, namespace: str, name: str) -> None:
        d = self.deployments[(namespace, name)]
        self._version += 1
        d["metadata"]["resourceVersion"] = str(self._version)
        replicas = int(d["spec"].get("replicas", 1))
        d["status"] = {
            "replicas": replicas,
            "readyReplicas": (replicas if self.auto_ready else 0) or None,
        }

    def app(self) -> FastAPI:
        app = FastAPI()
        base = "/apis/apps/v1/namespaces/{namespace}/deployments"

        async def authorise(
            request: Request, namespace: str, resource: str, verb: str
        ) -> Recorded | JSONResponse:
            raw = await request.body()
            entry = Recorded(
                request.method,
                request.url.path,
                verb,
                namespace,
                resource,
                request.headers.get("content-type", ""),
                json.loads(raw) if raw else None,
            )
            self.requests.append(entry)
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            rules = self.tokens.get(token)
            if rules is None:
                entry.status = 401
                return _status(401, "Unauthorized", "Unauthorized")
            if verb not in rules.get((namespace, "apps", resource), set()):
                entry.status = 403
                return _status(
                    403,
                    "Forbidden",
                    f'{resource}.apps is forbidden: cannot {verb} resource "{resource}" '
                    f'in API group "apps" in the namespace "{namespace}"',
                )
            entry.status = 200
            return entry

        def missing(name: str) -> JSONResponse:
            return _status(404, "NotFound", f'deployments.apps "{name}" not found')

        @app.get(base)
        async def list_(namespace: str, request: Request) -> JSONResponse:
            entry = await authorise(request, namespace, "deployments", "list")
            if isinstance(entry, JSONResponse):
                return entry
            selector = request.query_params.get("labelSelector")
            items = [
                d
                for (ns, _), d in self.deployments.items()
                if ns == namespace and _matches(selector, d["metadata"].get("labels") or {})
            ]
            return JSONResponse(
                {"kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": {}, "items": items}
            )

        @app.post(base)
        async def create(namespace: str, request: Request) -> JSONResponse:
            entry = await authorise(request, namespace, "deployments", "create")
            if isinstance(entry, JSONResponse):
                return entry
            name = entry.body["metadata"]["name"]
            if (namespace, name) in self.deployments:
                entry.status = 409
                return _status(409, "AlreadyExists", f'deployments.apps "{name}" already exists')
            if entry.body["metadata"].get("namespace", namespace) != namespace:
                entry.status = 400
                return _status(400, "BadRequest", "the namespace of the object does not match")
            self.deployments[(namespace, name)] = entry.body
            self._settle(namespace, name)
            return JSONResponse(self.deployments[(namespace, name)], status_code=201)

        @app.get(base + "/{name}")
        async def read(namespace: str, name: str, request: Request) -> JSONResponse:
            entry = await authorise(request, namespace, "deployments", "get")
            if isinstance(entry, JSONResponse):
                return entry
            if (namespace, name) not in self.deployments:
                entry.status = 404
                return missing(name)
            return JSONResponse(self.deployments[(namespace, name)])

        @app.put(base + "/{name}")
        async def replace(namespace: str, name: str, request: Request) -> JSONResponse:
            entry = await authorise(request, namespace, "deployments", "update")
            if isinstance(entry, JSONResponse):
                return entry
            current = self.deployments.get((namespace, name))
            if current is None:
                entry.status = 404
                return missing(name)
            if entry.body["metadata"].get("resourceVersion") != current["metadata"].get(
                "resourceVersion"
            ):
                entry.status = 409
                return _status(409, "Conflict", "the object has been modified")
            self.deployments[(namespace, name)] = entry.body
            self._settle(namespace, name)
            return JSONResponse(self.deployments[(namespace, name)])

        @app.delete(base + "/{name}")
        async def delete(namespace: str, name: str, request: Request) -> JSONResponse:
            entry = await authorise(request, namespace, "deployments", "delete")
            if isinstance(entry, JSONResponse):
                return entry
            if self.deployments.pop((namespace, name), None) is None:
                entry.status = 404
                return missing(name)
            return JSONResponse({"kind": "Status", "apiVersion": "v1", "status": "Success"})

        @app.patch(base + "/{name}/scale")
        async def patch_scale(namespace: str, name: str, request: Request) -> JSONResponse:
            entry = await authorise(request, namespace, "deployments/scale", "patch")
            if isinstance(entry, JSONResponse):
                return entry
            current = self.deployments.get((namespace, name))
            if current is None:
                entry.status = 404
                return missing(name)
            kind = entry.content_type.split(";")[0].strip()
            if kind != "application/merge-patch+json" or not isinstance(entry.body, dict):
                entry.status = 415 if kind != "application/merge-patch+json" else 400
                return _status(entry.status, "BadRequest", f"unsupported patch {kind!r}")
            replicas = entry.body.get("spec", {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                entry.status = 422
                return _status(422, "Invalid", "spec.replicas: Invalid value")
            current["spec"]["replicas"] = replicas
            self._settle(namespace, name)
            return JSONResponse(
                {
                    "kind": "Scale",
                    "apiVersion": "autoscaling/v1",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"replicas": replicas},
                    "status": {"replicas": replicas},
                }
            )

        return app
