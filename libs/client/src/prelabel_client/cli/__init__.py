"""The ``prelabel`` command line (typer + rich); ``app`` is the console script."""

from prelabel_client.cli.main import app

__all__ = ["app"]
