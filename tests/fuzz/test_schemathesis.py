"""Schemathesis against the OpenAPI documents of the five real services (issue 13.6).

Every check schemathesis has for single requests is on (server errors, status codes,
content types, headers and bodies against the documented schemas, negative data
rejected, positive data accepted, missing required headers, unsupported methods, the
``Allow`` header, ignored auth) in the examples, coverage (boundary values: NUL
characters, integers past 2^63, wrong types ...) and fuzzing phases, with bounded
examples so the suite takes minutes on two cores. ``positive_data_acceptance`` also
accepts 400, 413, 415 and 422: some bodies (DQL filters, pipeline graphs, uploaded
bytes whose sniffed type is refused) are free-form in the schema and the service checks
its own rules on them, answering the documented error codes. The stateful checks
(``use_after_free``, ``ensure_resource_availability``) need links the documents do not
declare; ``test_isolation.py`` covers another project's ids.

Requests carry project Alice's key (the dataset service's admin routes answer it 401).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from prelabel_client.endpoints import SERVICES, Service
from tests.fuzz.documents import openapi_document
from tests.fuzz.stack import FuzzStack

MAX_EXAMPLES = 10
"""Fuzzing examples per operation (the coverage phase adds its boundary cases)."""

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 13,
        "generation": {
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            "allow-x00": True,
            "database": "none",
        },
        "checks": {
            "enabled": True,
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "413", "415", "422"]
            },
        },
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
        "request-timeout": 30,
    }
)


class _Key:
    """The key requests carry, known once the stack has started."""

    value = ""


def _schema(service: Service) -> Any:
    schema = schemathesis.openapi.from_dict(openapi_document(service), config=CONFIG)

    @schema.auth()
    class ProjectKey:
        def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str:
            return _Key.value

        def set(
            self, case: schemathesis.Case, data: str, context: schemathesis.AuthContext
        ) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    return schema


SCHEMAS = {service: _schema(service) for service in SERVICES}
_HYPOTHESIS = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(autouse=True)
def _alice(fuzz_stack: FuzzStack) -> None:
    _Key.value = fuzz_stack.alice.key


@pytest.mark.parametrize("service", SERVICES)
def test_served_documents_are_these(fuzz_stack: FuzzStack, service: Service) -> None:
    assert fuzz_stack.openapi(service) == openapi_document(service)


@SCHEMAS["dataset"].parametrize()
@_HYPOTHESIS
def test_dataset_api(case: schemathesis.Case, fuzz_stack: FuzzStack) -> None:
    case.call_and_validate(base_url=fuzz_stack.urls["dataset"])


@SCHEMAS["trigger-router"].parametrize()
@_HYPOTHESIS
def test_trigger_router_api(case: schemathesis.Case, fuzz_stack: FuzzStack) -> None:
    case.call_and_validate(base_url=fuzz_stack.urls["trigger-router"])


@SCHEMAS["model-serving"].parametrize()
@_HYPOTHESIS
def test_model_serving_api(case: schemathesis.Case, fuzz_stack: FuzzStack) -> None:
    case.call_and_validate(base_url=fuzz_stack.urls["model-serving"])


@SCHEMAS["annotation"].parametrize()
@_HYPOTHESIS
def test_annotation_api(case: schemathesis.Case, fuzz_stack: FuzzStack) -> None:
    case.call_and_validate(base_url=fuzz_stack.urls["annotation"])


@SCHEMAS["billing"].parametrize()
@_HYPOTHESIS
def test_billing_api(case: schemathesis.Case, fuzz_stack: FuzzStack) -> None:
    case.call_and_validate(base_url=fuzz_stack.urls["billing"])
