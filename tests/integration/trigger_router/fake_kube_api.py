"""A protocol-level stand-in for the Kubernetes API server (no cluster runs here).

It serves the two calls the kubernetes scaler backend makes, over real HTTP, and
answers the way kube-apiserver does: ``PATCH .../deployments/<name>/scale`` (a merge
patch of ``spec.replicas``; a JSON Patch body must be a list of operations, else 400;
an unknown Deployment is a 404 ``Status``; a missing bearer token a 401) and ``GET
.../deployments`` (a ``DeploymentList`` whose ``readyReplicas`` follow the spec).
Every request is recorded so tests can check exactly what went over the wire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass
class Recorded:
    """One request as the fake API server saw it."""

    method: str
    path: str
    content_type: str
    authorization: str
    body: Any


@dataclass
class FakeKubeApi:
    """Deployments (name -> replicas) per namespace, and the requests received."""

    token: str
    deployments: dict[tuple[str, str], int] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)

    def add(self, namespace: str, name: str, replicas: int = 0) -> None:
        self.deployments[(namespace, name)] = replicas

    def patches(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "PATCH"]

    def app(self) -> FastAPI:
        app = FastAPI()

        def status(code: int, reason: str, message: str) -> JSONResponse:
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

        async def record(request: Request) -> Recorded:
            raw = await request.body()
            entry = Recorded(
                request.method,
                request.url.path,
                request.headers.get("content-type", ""),
                request.headers.get("authorization", ""),
                json.loads(raw) if raw else None,
            )
            self.requests.append(entry)
            return entry

        def scale(namespace: str, name: str) -> dict[str, Any]:
            replicas = self.deployments[(namespace, name)]
            return {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"replicas": replicas},
                "status": {"replicas": replicas, "selector": f"app={name}"},
            }

        @app.patch("/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale")
        async def patch_scale(namespace: str, name: str, request: Request) -> JSONResponse:
            entry = await record(request)
            if entry.authorization != f"Bearer {self.token}":
                return status(401, "Unauthorized", "Unauthorized")
            if (namespace, name) not in self.deployments:
                return status(404, "NotFound", f'deployments.apps "{name}" not found')
            kind = entry.content_type.split(";")[0].strip()
            if kind == "application/json-patch+json" and not isinstance(entry.body, list):
                return status(
                    400,
                    "BadRequest",
                    "json: cannot unmarshal object into Go value of type jsonpatch.Patch",
                )
            if kind not in (
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
            ):
                return status(415, "UnsupportedMediaType", f"unsupported patch type {kind!r}")
            replicas = entry.body.get("spec", {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                return status(422, "Invalid", "spec.replicas: Invalid value")
            self.deployments[(namespace, name)] = replicas
            return JSONResponse(scale(namespace, name))

        @app.get("/apis/apps/v1/namespaces/{namespace}/deployments")
        async def list_deployments(namespace: str, request: Request) -> JSONResponse:
            entry = await record(request)
            if entry.authorization != f"Bearer {self.token}":
                return status(401, "Unauthorized", "Unauthorized")
            items = [
                {
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {
                        "replicas": replicas,
                        "selector": {"matchLabels": {"app": name}},
                        "template": {
                            "metadata": {"labels": {"app": name}},
                            "spec": {"containers": []},
                        },
                    },
                    "status": {"replicas": replicas, "readyReplicas": replicas or None},
                }
                for (ns, name), replicas in self.deployments.items()
                if ns == namespace
            ]
            return JSONResponse(
                {
                    "kind": "DeploymentList",
                    "apiVersion": "apps/v1",
                    "metadata": {"resourceVersion": "1"},
                    "items": items,
                }
            )

        return app
