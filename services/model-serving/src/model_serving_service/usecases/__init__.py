"""What the HTTP API does: install catalog models, register BYOM, deploy and undeploy
model services, predict synchronously; plus the background work of the service process
(deploy probes, undeploy drains, expiring dead replicas)."""

from __future__ import annotations

from model_serving_service.usecases.predict import PredictUseCases


class ModelServing(PredictUseCases):
    """The service's use cases over its repository, Triton and the broker (one module
    per area: models, services, predict-now)."""
