"""The hostile inputs issue 13 lists, each against the real service that once answered
500: now a 4xx whose body matches what the OpenAPI document says for that status."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest

from prelabel_client.endpoints import Service
from tests.fuzz.documents import openapi_document
from tests.fuzz.stack import FuzzStack

PAST_INT64 = str(2**63)


def _documented_body(service: Service, method: str, path: str, status: int) -> dict[str, Any]:
    document = openapi_document(service)
    response = document["paths"][path][method.lower()]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


def _call(
    stack: FuzzStack, service: Service, method: str, url: str, template: str, **kwargs: Any
) -> httpx.Response:
    with httpx.Client(base_url=stack.urls[service], headers=stack.alice.auth, timeout=30) as http:
        answer = http.request(method, url, **kwargs)
    assert 400 <= answer.status_code < 500, f"{method} {url}: {answer.status_code} {answer.text}"
    jsonschema.validate(
        answer.json(), _documented_body(service, method, template, answer.status_code)
    )
    return answer


@pytest.fixture(scope="module")
def dataset_id(fuzz_stack: FuzzStack) -> str:
    with httpx.Client(headers=fuzz_stack.alice.auth, timeout=30) as http:
        created = http.post(f"{fuzz_stack.urls['dataset']}/datasets", json={"name": "known"})
    created.raise_for_status()
    return str(created.json()["id"])


@pytest.mark.parametrize(
    ("service", "url", "template"),
    [
        ("dataset", "/datasets/ds_%00x", "/datasets/{dataset_id}"),
        ("trigger-router", "/triggers/tr%00", "/triggers/{trigger_id}"),
        ("model-serving", "/models/mdl_%00", "/models/{model_id}"),
        ("annotation", "/tasks/task_%00", "/tasks/{task_id}"),
        ("annotation", "/annotations/a%00", "/annotations/{annotation_id}"),
    ],
)
def test_a_nul_in_a_path_is_refused(
    fuzz_stack: FuzzStack, service: Service, url: str, template: str
) -> None:
    answer = _call(fuzz_stack, service, "GET", url, template)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["path"]
    assert "NUL" in answer.json()["detail"][0]["msg"]


def test_a_nul_in_a_query_or_a_body_is_refused_naming_where(
    fuzz_stack: FuzzStack, dataset_id: str
) -> None:
    query = _call(
        fuzz_stack,
        "annotation",
        "GET",
        "/annotations",
        "/annotations",
        params={"item_id": "it\x00em"},
    )
    assert query.status_code == 422
    assert query.json()["detail"][0]["loc"] == ["query", "item_id"]
    body = _call(
        fuzz_stack,
        "annotation",
        "POST",
        "/tasks",
        "/tasks",
        json={"name": "a\x00b", "dataset_id": dataset_id},
    )
    assert body.status_code == 422
    assert body.json()["detail"][0]["loc"] == ["body", "name"]
    nested = _call(
        fuzz_stack,
        "trigger-router",
        "POST",
        "/triggers",
        "/triggers",
        json={"name": "t", "spec": {"filter": {"dir\x00": "/x"}}},
    )
    assert nested.status_code == 422
    assert nested.json()["detail"][0]["loc"] == ["body", "spec", "filter", "dir\x00"]
    form = _call(
        fuzz_stack,
        "dataset",
        "POST",
        f"/datasets/{dataset_id}/items",
        "/datasets/{dataset_id}/items",
        content=b"dir=%00",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 422


@pytest.mark.parametrize(
    ("service", "url", "template", "name"),
    [
        ("dataset", "/datasets/{ds}/items", "/datasets/{dataset_id}/items", "page"),
        ("trigger-router", "/executions", "/executions", "page"),
        ("annotation", "/annotations", "/annotations", "offset"),
        ("annotation", "/annotations", "/annotations", "limit"),
    ],
)
def test_page_numbers_past_2_63_are_refused(
    fuzz_stack: FuzzStack, dataset_id: str, service: Service, url: str, template: str, name: str
) -> None:
    answer = _call(
        fuzz_stack,
        service,
        "GET",
        url.replace("{ds}", dataset_id),
        template,
        params={name: PAST_INT64},
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", name]


def test_a_sort_in_the_query_string_that_is_not_an_object_is_refused(
    fuzz_stack: FuzzStack, dataset_id: str
) -> None:
    for sort in ('"name"', "[1]", "3"):
        answer = _call(
            fuzz_stack,
            "dataset",
            "GET",
            f"/datasets/{dataset_id}/items",
            "/datasets/{dataset_id}/items",
            params={"sort": sort},
        )
        assert answer.status_code in (400, 422), answer.text


def test_a_sort_in_a_query_body_that_is_not_an_object_is_refused(
    fuzz_stack: FuzzStack, dataset_id: str
) -> None:
    for sort in ("name", 7, [1]):
        body = _call(
            fuzz_stack,
            "dataset",
            "POST",
            f"/datasets/{dataset_id}/items/query",
            "/datasets/{dataset_id}/items/query",
            json={"sort": sort},
        )
        assert body.status_code in (400, 422), body.text


def test_dates_outside_utc_or_given_as_numbers_are_refused(fuzz_stack: FuzzStack) -> None:
    for since in ("0001-01-01T00:00:00+10:00", "0.5", "1e400"):
        answer = _call(
            fuzz_stack,
            "trigger-router",
            "GET",
            "/executions",
            "/executions",
            params={"since": since},
        )
        assert answer.status_code == 422, (since, answer.text)
    billing = _call(
        fuzz_stack,
        "billing",
        "GET",
        "/usage/models",
        "/usage/models",
        params={"from": "0001-01-01T00:00:00+10:00"},
    )
    assert billing.status_code == 422


def test_a_budget_of_1e400_is_refused(fuzz_stack: FuzzStack) -> None:
    for amount in (b"1e400", b'"1e400"', b'"NaN"', b'"-Infinity"'):
        answer = _call(
            fuzz_stack,
            "billing",
            "PUT",
            "/budget",
            "/budget",
            content=b'{"amount": ' + amount + b"}",
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 422, (amount, answer.text)


def test_metrics_are_not_served_through_a_proxy(fuzz_stack: FuzzStack) -> None:
    for service, url in fuzz_stack.urls.items():
        assert httpx.get(f"{url}/metrics").status_code == 200, service
        proxied = httpx.get(f"{url}/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert proxied.status_code == 404, service
