"""Billing: the budget, what was spent, the burn rate, and usage per service and day."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from console_service.domain import CHART_H, CHART_W, usage_chart
from console_service.web import Client, redirect, render
from prelabel_client.errors import AuthError, ValidationError
from prelabel_client.sdk import Prelabel

router = APIRouter()


async def _page(
    request: Request, client: Prelabel, status_code: int = 200, error: str | None = None
) -> Response:
    budget, burn, usage, services = await asyncio.gather(
        client.billing.budget(),
        client.billing.burn_rate(),
        client.billing.usage(),
        client.services.list(),
    )
    bars, labels, top = usage_chart(usage.rows)
    names = {s.id: s.name for s in services}
    return render(
        request, "billing.html", status_code, budget=budget, burn=burn, usage=usage, bars=bars,
        labels=labels, top=top, names=names, chart_w=CHART_W, chart_h=CHART_H, error=error,
    )  # fmt: skip


@router.get("/billing")
async def billing(request: Request, client: Client) -> Response:
    return await _page(request, client)


@router.post("/billing/top-up")
async def top_up(
    request: Request, client: Client, amount: Annotated[str, Form(max_length=40)]
) -> Response:
    try:
        await client.billing.top_up(amount.strip())
    except (ValidationError, AuthError) as exc:
        return await _page(request, client, exc.status_code, exc.message)
    return redirect(request, "/billing")
