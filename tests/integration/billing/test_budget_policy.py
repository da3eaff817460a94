"""Who may set a budget to what (issue 13, hostile input): a project's own key up to
``max_budget`` (10,000 by default), never unlimited; the operator's admin key anything."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from tests.conftest import AuthService
from tests.integration.billing.conftest import BILLING_ADMIN_KEY, BillingService


async def test_a_project_key_cannot_give_itself_more_than_the_maximum(
    billing_service: BillingService,
) -> None:
    svc = billing_service
    assert svc.settings.max_budget == Decimal("10000")
    ok = await svc.http.put("/budget", json={"amount": "9000"}, headers=svc.auth())
    assert ok.status_code == 200, ok.text
    for body in ({"amount": "10000.01"}, {"amount": None}, {"amount": "1e11"}):
        refused = await svc.http.put("/budget", json=body, headers=svc.auth())
        assert refused.status_code == 403, (body, refused.text)
        assert "admin key" in refused.json()["detail"]
    past = await svc.http.post("/budget/top-up", json={"amount": "1000.01"}, headers=svc.auth())
    assert past.status_code == 403, past.text
    to_the_top = await svc.http.post("/budget/top-up", json={"amount": 1000}, headers=svc.auth())
    assert to_the_top.status_code == 200, to_the_top.text
    assert Decimal(to_the_top.json()["budget"]) == Decimal("10000")
    huge = await svc.http.put("/budget", content=b'{"amount": 1e400}', headers=svc.auth())
    assert huge.status_code == 422, huge.text


async def test_the_admin_key_sets_any_budget_and_a_project_key_is_not_it(
    billing_service: BillingService, auth_service: AuthService
) -> None:
    svc = billing_service
    admin = {"Authorization": f"Bearer {BILLING_ADMIN_KEY}"}
    other_project, other_key = await auth_service.new_project()
    unlimited = await svc.http.put(
        f"/projects/{other_project}/budget", json={"amount": None}, headers=admin
    )
    assert unlimited.status_code == 200, unlimited.text
    assert unlimited.json()["budget"] is None
    big = await svc.http.put(
        f"/projects/{other_project}/budget", json={"amount": "250000"}, headers=admin
    )
    assert Decimal(big.json()["budget"]) == Decimal("250000")
    topped = await svc.http.post(
        f"/projects/{other_project}/budget/top-up", json={"amount": "50000"}, headers=admin
    )
    assert Decimal(topped.json()["budget"]) == Decimal("300000")
    seen = await svc.http.get("/budget", headers=svc.auth(other_key))
    assert Decimal(seen.json()["budget"]) == Decimal("300000")
    for key in (svc.api_key, other_key):
        refused = await svc.http.put(
            f"/projects/{other_project}/budget", json={"amount": None}, headers=svc.auth(key)
        )
        assert refused.status_code == 401, refused.text
    # The project's own key cannot raise its budget further (it is past the maximum).
    more = await svc.http.post("/budget/top-up", json={"amount": 1}, headers=svc.auth(other_key))
    assert more.status_code == 403, more.text


async def test_concurrent_top_ups_cannot_pass_the_maximum_together(
    billing_service: BillingService,
) -> None:
    """Each top-up alone stays under the bound; together they would pass it: the bound is
    checked under the budget row's lock, so only as many as fit are accepted."""
    svc = billing_service
    start = await svc.http.put("/budget", json={"amount": "0"}, headers=svc.auth())
    assert start.status_code == 200, start.text
    answers = await asyncio.gather(
        *(
            svc.http.post("/budget/top-up", json={"amount": "3000"}, headers=svc.auth())
            for _ in range(8)
        )
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 3 + [403] * 5, [a.text for a in answers]
    budget = await svc.http.get("/budget", headers=svc.auth())
    assert Decimal(budget.json()["budget"]) == Decimal("9000")
