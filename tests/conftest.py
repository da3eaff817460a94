"""Fixtures come from the common.testing.plugin pytest plugin (loaded in pyproject)."""
