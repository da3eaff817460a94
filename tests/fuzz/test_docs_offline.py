"""``/docs`` and ``/redoc`` of every service load nothing from outside (issue 15): every
URL the pages name is local, and each one answers 200."""

from __future__ import annotations

import re

import httpx
import pytest

from prelabel_client.endpoints import SERVICES, Service
from tests.fuzz.stack import FuzzStack

_URL = re.compile(r"""(?:src|href|url)\s*[=:(]\s*['"]([^'"]+)['"]""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
@pytest.mark.parametrize("service", SERVICES)
def test_docs_pages_name_only_local_assets_that_answer(
    fuzz_stack: FuzzStack, service: Service, page: str
) -> None:
    with httpx.Client(base_url=fuzz_stack.urls[service], timeout=30) as http:
        html = http.get(page)
        assert html.status_code == 200
        urls = set(_URL.findall(html.text))
        assert "/openapi.json" in urls
        assets = {u for u in urls if u.endswith((".js", ".css", ".png"))}
        assert len(assets) >= (3 if page == "/docs" else 2), urls
        outside = sorted(u for u in urls if not u.startswith("/") or u.startswith("//"))
        assert outside == [], f"{page} names URLs outside the service: {outside}"
        assert "cdn" not in html.text.lower()
        for url in sorted(urls):
            answer = http.get(url)
            assert answer.status_code == 200, url
            assert answer.content, url
