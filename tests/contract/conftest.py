"""Fixtures of the contract tests (the shared code lives in support.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.contract.support import check_snapshot


@pytest.fixture
def snapshot() -> Callable[[str, str], None]:
    """``snapshot(name, text)``: fail with a diff unless ``text`` equals the committed snapshot."""
    return check_snapshot
