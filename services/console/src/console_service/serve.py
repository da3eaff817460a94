"""Run the console with uvicorn, logging JSON lines like the services."""

from __future__ import annotations

from fastapi import FastAPI

from common.observability import configure_logging
from console_service.settings import Settings


def load_settings() -> Settings:
    """The settings from the environment; exit with a clear message when invalid."""
    import sys

    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        lines = [
            f"  CONSOLE_{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        ]
        sys.stderr.write("invalid configuration:\n" + "\n".join(lines) + "\n")
        raise SystemExit(2) from exc


def serve(app: FastAPI, settings: Settings) -> None:
    """Serve ``app`` on the configured host and port."""
    import uvicorn

    configure_logging("console", settings.log_level)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        root_path=settings.root_path,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )
