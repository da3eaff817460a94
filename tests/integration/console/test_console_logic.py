"""The console's pure parts: the sealed session, the filter box, shapes to draw, the
pipeline form and its graph, and where a sign-in may send the browser next. No servers."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from unittest import mock

import pytest

from console_service.domain import (
    FormError,
    PipelineForm,
    layout,
    parse_filter,
    shape_of,
    shapes_of,
    with_directory,
)
from console_service.pages.auth import _safe_next
from console_service.session import Session, SessionCodec
from prelabel_client.models import Annotation

SECRET = "a-console-secret-of-at-least-32-characters"


def test_a_sealed_session_opens_with_its_secret_only_and_hides_the_key() -> None:
    codec = SessionCodec(SECRET, 60)
    session = Session.anonymous().sign_in("pl_secret_key", "prj_1")
    sealed = codec.seal(session)

    assert "pl_secret_key" not in sealed
    assert codec.open(sealed) == session
    assert SessionCodec("another-secret-of-at-least-32-characters!", 60).open(sealed) is None
    assert codec.open(sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]) is None
    assert codec.open("") is None
    assert codec.open("not a token \x00") is None


def test_a_session_expires_and_a_sign_in_gets_a_new_csrf_token() -> None:
    codec = SessionCodec(SECRET, 60)
    anonymous = Session.anonymous()
    sealed = codec.seal(anonymous)
    with mock.patch("time.time", return_value=time.time() + 61):
        assert codec.open(sealed) is None
    signed = anonymous.sign_in("key", "prj")
    assert signed.csrf != anonymous.csrf
    assert signed.csrf_matches(signed.csrf)
    assert not signed.csrf_matches(anonymous.csrf)
    assert not signed.csrf_matches(None)


def test_filter_box_takes_json_objects_and_says_what_is_wrong() -> None:
    assert parse_filter("  ") == {}
    assert parse_filter('{"dir": "/a"}') == {"dir": "/a"}
    with pytest.raises(FormError, match="not JSON"):
        parse_filter("{dir: /a}")
    with pytest.raises(FormError, match="JSON object"):
        parse_filter("[1, 2]")
    with pytest.raises(FormError, match="longer than"):
        parse_filter("{" + " " * 20_001 + "}")


def test_directory_narrows_the_filter() -> None:
    assert with_directory({}, "") == {}
    assert with_directory({}, "/") == {}
    assert with_directory({}, "/a/**") == {"dir": "/a/**"}
    assert with_directory({"x": 1}, "/a") == {"$and": [{"x": 1}, {"dir": "/a"}]}


def _annotation(kind: str, coordinates: object, **extra: object) -> Annotation:
    return Annotation.model_validate(
        {
            "id": f"ann_{kind}",
            "project_id": "prj",
            "dataset_id": "ds",
            "item_id": "itm",
            "type": kind,
            "label": "l",
            "coordinates": coordinates,
            "source": "model",
            "created_at": datetime.now(UTC),
            **extra,
        }
    )


def test_shapes_of_each_annotation_kind() -> None:
    box = shape_of(_annotation("box", [[10, 20], [4, 2]], confidence=0.5))
    assert (box.x, box.y, box.width, box.height, box.drawn, box.as_polygon) == (
        4, 2, 6, 18, True, False,
    )  # fmt: skip
    polygon = shape_of(_annotation("polygon", [[0, 0], [1.5, 0], [1, 2]]))
    assert polygon.points == "0,0 1.5,0 1,2"
    line = shape_of(_annotation("text", [[0, 0], [9, 0], [9, 3], [0, 3]], text="hello"))
    assert (line.as_polygon, line.text) == (True, "hello")
    assert shape_of(_annotation("point", [3, 4])).x == 3
    assert not shape_of(_annotation("classification", None)).drawn
    assert not shape_of(_annotation("text", None, text="no geometry")).drawn
    # Nonsense geometry is listed, not drawn (and never breaks the page).
    assert not shape_of(_annotation("box", [["a", 1], [2]])).drawn
    assert shapes_of([_annotation("box", [[0, 0], [1, 1]], deleted=True)]) == []


def test_pipeline_form_builds_dataset_predict_task_with_an_optional_confidence_edge() -> None:
    plain = PipelineForm("p", "ds", "svc", "task", filter={"dir": "/in"}).definition()
    assert [n["type"] for n in plain["nodes"]] == ["dataset", "predict", "task"]
    assert plain["nodes"][0]["config"]["trigger"] == {
        "actions": ["Created"], "execution_mode": "Once", "filter": {"dir": "/in"},
    }  # fmt: skip
    edged = PipelineForm("p", "ds", "svc", "task", min_confidence=0.9).definition()
    conditions = [e.get("condition") for e in edged["edges"]]
    assert conditions[1] == {"prediction.min_confidence": {"$gte": 0.9}}
    assert edged["nodes"][2]["config"] == {"task_id": "task", "auto_accept": True}
    for bad, message in (
        (PipelineForm(" ", "ds", "svc", "t"), "name"),
        (PipelineForm("p", "", "svc", "t"), "dataset"),
        (PipelineForm("p", "ds", "svc", "t", actions=("Bogus",)), "action"),
        (PipelineForm("p", "ds", "svc", "t", execution_mode="Never"), "Once or Always"),
        (PipelineForm("p", "ds", "svc", "t", min_confidence=2.0), "between 0 and 1"),
    ):
        with pytest.raises(FormError, match=message):
            bad.definition()


def test_graph_layout_puts_nodes_in_columns_by_depth_even_with_a_cycle() -> None:
    definition = PipelineForm("p", "ds", "svc", "task", min_confidence=0.5).definition()
    nodes, edges, width, _ = layout(definition, {"review": {"success": 2}})
    columns = {n.id: n.x for n in nodes}
    assert columns["dataset"] < columns["predict"] < columns["review"] == columns["accepted"]
    assert next(n for n in nodes if n.id == "review").counts == {"success": 2}
    assert len(edges) == 3
    assert width > columns["review"]
    cyclic = {
        "nodes": [{"id": "a"}, {"id": "b"}],
        "edges": [{"src": "a", "tgt": "b"}, {"src": "b", "tgt": "a"}],
    }
    assert len(layout(cyclic, {})[0]) == 2


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/items/itm_1", "/items/itm_1"),
        ("//evil.example/x", "/datasets"),
        ("https://evil.example/", "/datasets"),
        ("/\\evil.example", "/datasets"),
        (None, "/datasets"),
    ],
)
def test_sign_in_only_sends_the_browser_to_console_paths(target: str | None, expected: str) -> None:
    assert _safe_next(target) == expected


def _console_routes() -> list[tuple[str, str]]:
    from fastapi.routing import APIRoute

    from console_service.pages import auth, billing, datasets, models, pipelines, review

    found = []
    for module in (auth, datasets, models, pipelines, review, billing):
        for route in module.router.routes:
            if isinstance(route, APIRoute) and route.path not in OPEN_PATHS:
                path = route.path.replace("{", "").replace("}", "")  # /items/item_id: any id
                found.extend((method, path) for method in sorted(route.methods))
    return found


OPEN_PATHS = {"/login", "/"}


async def test_every_page_and_partial_needs_a_session_and_every_post_a_csrf_token() -> None:
    import httpx

    from console_service.app import create_app
    from console_service.settings import Settings

    routes = _console_routes()
    assert len(routes) > 25
    # No lifespan: nothing may get as far as calling a service.
    app = create_app(Settings(session_secret=SECRET))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as http:
        for method, path in routes:
            if method == "GET":
                page = await http.get(path)
                assert page.status_code == 303, path
                assert page.headers["location"].startswith("/login?next="), path
                partial = await http.get(path, headers={"X-Console-Partial": "1"})
                assert partial.status_code == 401, path
            else:
                refused = await http.request(method, path, data={"csrf_token": "forged"})
                assert refused.status_code == 403, (method, path)
        logout = await http.post("/logout", data={})
        assert logout.status_code == 403


def test_a_correct_review_takes_changed_labels_and_text_deletions_and_drawn_boxes() -> None:
    from console_service.domain import corrections_from_form

    current = {
        s.id: s
        for s in shapes_of(
            [
                _annotation("box", [[0, 0], [4, 4]]),
                _annotation("text", [[0, 0], [9, 3]], text="helo"),
                _annotation("polygon", [[0, 0], [1, 0], [1, 1]]),
            ]
        )
    }
    fields = [
        ("label:ann_box", "l"),  # unchanged: no edit
        ("label:ann_text", "l"),
        ("text:ann_text", "hello"),
        ("label:ann_polygon", "l"),
        ("delete:ann_polygon", "1"),
        ("new_box", "1,2,3,4.5"),
        ("new_label", "ink"),
    ]
    assert corrections_from_form(current, fields) == [
        {"op": "delete", "annotation_id": "ann_polygon"},
        {"op": "update", "annotation_id": "ann_text", "text": "hello"},
        {"op": "create", "type": "box", "label": "ink", "coordinates": [[1, 2], [3, 4.5]]},
    ]
    with pytest.raises(FormError, match="nothing was corrected"):
        corrections_from_form(current, [("label:ann_box", "l")])
    with pytest.raises(FormError, match="not an annotation of this item"):
        corrections_from_form(current, [("delete:ann_of_another_item", "1")])
    with pytest.raises(FormError, match="four numbers"):
        corrections_from_form(current, [("new_box", "1,2,3"), ("new_label", "x")])
    with pytest.raises(FormError, match="label"):
        corrections_from_form(current, [("new_box", "1,2,3,4")])


def test_usage_chart_stacks_services_per_day_scaled_to_the_busiest_day() -> None:
    from datetime import date
    from decimal import Decimal

    from console_service.domain import CHART_H, CHART_PAD, usage_chart
    from prelabel_client.models import UsageRow

    def row(day: int, service: str, cost: str) -> UsageRow:
        return UsageRow(
            service_id=service, day=date(2026, 12, day), runtime_seconds=Decimal(1),
            cost=Decimal(cost), predictions=1,
        )  # fmt: skip

    bars, labels, top = usage_chart([row(1, "a", "1"), row(1, "b", "3"), row(2, "a", "2")])
    assert top == 4.0
    assert [label for label, _ in labels] == ["12-01", "12-02"]
    full = CHART_H - 2 * CHART_PAD
    day1 = [b for b in bars if b.day == "2026-12-01"]
    assert sum(b.height for b in day1) == full
    assert next(b for b in bars if b.day == "2026-12-02").height == full // 2
    assert usage_chart([]) == ([], [], 0.0)


async def test_a_service_that_does_not_answer_is_a_502_page_naming_it_not_a_traceback() -> None:
    import httpx

    from common.testing.servers import free_port
    from console_service.app import create_app
    from console_service.session import COOKIE
    from console_service.settings import Settings

    nowhere = f"http://127.0.0.1:{free_port()}"
    app = create_app(Settings(prelabel_url=nowhere, session_secret=SECRET, request_timeout_s=2))  # type: ignore[arg-type]
    sealed = SessionCodec(SECRET, 60).seal(Session.anonymous().sign_in("pl_key", "prj"))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://console") as http,
    ):
        http.cookies.set(COOKIE, sealed)
        page = await http.get("/datasets")
        assert page.status_code == 502
        assert f"{nowhere}/api/dataset" in page.text
        assert "Traceback" not in page.text
        assert "pl_key" not in page.text
        ready = await http.get("/readyz")
        assert ready.status_code == 503
