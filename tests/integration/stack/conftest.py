"""Fixtures of the stack's tests: the services, the console and nginx (``proxied``)."""

from tests.integration.stack.proxied import client_env, project_key, proxied

__all__ = ["client_env", "project_key", "proxied"]
