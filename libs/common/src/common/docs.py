"""``/docs`` (Swagger UI) and ``/redoc`` served with their JavaScript and CSS from inside
the installed packages, never from a CDN: the pages render on machines and clusters
without internet access.

The files are those the ``fastapi-offline`` wheel ships (Swagger UI's bundle and CSS,
ReDoc's standalone bundle, a favicon); only its static folder is used. Every URL the
pages name starts with the request's ``root_path``, so they work behind the one-URL
proxy (``/api/<service>/docs``) too.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_ASSETS_URL = "/docs-assets"
"""Where the pages' JavaScript, CSS and favicon are served."""

DOCS_ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
"""The files served under :data:`DOCS_ASSETS_URL`."""


def docs_assets_dir() -> Path:
    """The folder holding :data:`DOCS_ASSET_FILES` (inside the ``fastapi_offline`` package)."""
    return Path(str(files("fastapi_offline") / "static"))


def install_offline_docs(
    app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc"
) -> None:
    """Serve ``docs_url`` and ``redoc_url`` on ``app`` (built with ``docs_url=None,
    redoc_url=None``) with their assets under :data:`DOCS_ASSETS_URL`."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=docs_assets_dir()), name="docs-assets")
    oauth2_redirect = f"{docs_url}/oauth2-redirect"

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        return get_swagger_ui_html(
            openapi_url=f"{base}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{base}{oauth2_redirect}",
            swagger_js_url=f"{base}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{base}{DOCS_ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        return get_redoc_html(
            openapi_url=f"{base}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{base}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{base}{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
