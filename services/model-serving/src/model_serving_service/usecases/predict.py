"""Predict now: one synchronous prediction through a deployed service."""

from __future__ import annotations

import time
from dataclasses import dataclass

from common.contracts import PredictedAnnotation
from model_serving_service.adapters.triton import (
    InferenceError,
    ModelLoadError,
    ModelNotLoadedError,
    TritonTimeoutError,
    TritonUnavailableError,
)
from model_serving_service.domain.errors import (
    ConflictError,
    InvalidModelError,
    ModelServingError,
    TooLargeError,
    UnavailableError,
)
from model_serving_service.predictor import BadInputError, predict_batch, prepare
from model_serving_service.repository.models import Model
from model_serving_service.usecases.services import ServiceUseCases


class GatewayTimeoutError(ModelServingError):
    """The model did not answer within its timeout."""

    status = 504


@dataclass(frozen=True)
class PredictNowResult:
    """Annotations of one synchronous prediction."""

    model: Model
    annotations: list[PredictedAnnotation]
    seconds: float


class PredictUseCases(ServiceUseCases):
    """Synchronous predictions."""

    async def predict_now(
        self, project_id: str, service_id: str, data: bytes, mimetype: str | None
    ) -> PredictNowResult:
        """Run the service's model on one uploaded file, synchronously."""
        service = await self.get_service(project_id, service_id)
        if service.status == "undeploying":
            raise ConflictError(f"service {service_id} is being undeployed")
        model = await self.get_model(project_id, service.model_id)
        if len(data) > self.settings.max_image_bytes:
            raise TooLargeError(f"file is larger than {self.settings.max_image_bytes} bytes")
        try:
            prepared = await prepare(model.spec, data, mimetype)
        except BadInputError as exc:
            raise InvalidModelError([exc.reason]) from exc
        started = time.monotonic()

        async def run() -> list[PredictedAnnotation]:
            annotations = await predict_batch(
                model.spec,
                model.triton_name,
                self.inference,
                [prepared],
                timeout=model.spec.timeout_seconds,
            )
            return annotations[0]

        try:
            try:
                loaded = await self.holds.control.is_ready(model.triton_name)
                if not loaded:
                    raise ModelNotLoadedError(model.triton_name)
                annotations = await run()
            except ModelNotLoadedError:
                # Nobody holds it loaded: hold it for this one call (cold start).
                async with self.holds.held(model.triton_name, "predict-now"):
                    annotations = await run()
        except ModelLoadError as exc:
            raise UnavailableError(f"model could not be loaded: {exc}") from exc
        except TritonUnavailableError as exc:
            raise UnavailableError(f"Triton is unreachable: {exc}") from exc
        except TritonTimeoutError as exc:
            raise GatewayTimeoutError(
                f"timeout: no answer within the model's {model.spec.timeout_seconds:g}s"
            ) from exc
        except InferenceError as exc:
            raise InvalidModelError([f"model error: {exc}"]) from exc
        return PredictNowResult(model, annotations, time.monotonic() - started)
