"""The five services' OpenAPI documents, built without starting anything.

Schemathesis parametrizes tests at collection time, before any fixture runs (its lazy
``from_fixture`` loader does not work with pytest 9), so the documents come from the
apps themselves: an app's OpenAPI depends on its routes, not on its connections.
``test_served_documents_are_these`` checks that the running services serve the same.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from prelabel_client.endpoints import Service

_UNUSED = {
    "amqp_url": "amqp://guest:guest@127.0.0.1:5672/",
    "database_url": "postgresql://postgres@127.0.0.1:5432/unused",
}
_S3 = {
    "s3_endpoint_url": "http://127.0.0.1:8333",
    "s3_bucket": "unused",
    "s3_access_key": "unused",
    "s3_secret_key": "unused",
}


def build_app(service: Service) -> FastAPI:
    """The service's app, built (not started) with settings that are never used."""
    if service == "dataset":
        from dataset_service.app import create_app as dataset
        from dataset_service.settings import Settings as DatasetSettings

        return dataset(DatasetSettings(**_UNUSED, **_S3, admin_key="unused"))  # type: ignore[arg-type]
    if service == "trigger-router":
        from trigger_router_service.app import create_app as router
        from trigger_router_service.settings import Settings as RouterSettings

        return router(
            RouterSettings(**_UNUSED, auth_url="http://unused", annotation_url="http://unused")  # type: ignore[arg-type]
        )
    if service == "model-serving":
        from model_serving_service.app import create_app as model_serving
        from model_serving_service.settings import Settings as ModelServingSettings

        return model_serving(
            ModelServingSettings(
                **_UNUSED,  # type: ignore[arg-type]
                **_S3,
                auth_url="http://unused",
                triton_http_url="unused:1",
                triton_grpc_url="unused:2",
            )
        )
    if service == "annotation":
        from annotation_service.app import create_app as annotation
        from annotation_service.settings import Settings as AnnotationSettings

        return annotation(AnnotationSettings(**_UNUSED, auth_url="http://unused"))  # type: ignore[arg-type]
    from billing_service.app import create_app as billing
    from billing_service.settings import Settings as BillingSettings

    return billing(BillingSettings(**_UNUSED, auth_url="http://unused"))  # type: ignore[arg-type]


def openapi_document(service: Service) -> dict[str, Any]:
    """The OpenAPI document ``service`` serves at ``/openapi.json``."""
    return build_app(service).openapi()
