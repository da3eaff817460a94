"""The envelope's class per contract is made once and kept."""

from __future__ import annotations

import gc
import weakref
from datetime import UTC, datetime

from common.contracts import BudgetRestored
from common.envelope import envelope_type, make_event


def _restored() -> BudgetRestored:
    return BudgetRestored(project_id="prj", budget=10, spent=1, at=datetime.now(UTC))


def test_an_envelope_class_outlives_its_events() -> None:
    """pydantic holds ``CloudEvent[X]`` weakly: without the cache a full collection
    frees the class once no event holds it, and the next event builds it again."""
    made = weakref.ref(type(make_event(_restored(), source="/test")))
    gc.collect()
    assert made() is not None
    event = make_event(_restored(), source="/test")
    assert type(event) is made() is envelope_type(BudgetRestored)
    assert event.type == "prelabel.budget.restored.v1"
