"""The whole pre-labeling flow across the five services: upload -> trigger -> a model
service scaled from zero -> prediction on Triton -> annotations -> labeling task ->
review -> billing -> back to zero.

The five apps run as ``make up`` wires them (``tests/e2e/conftest.py``). The test drives
the stack with the flow of ``make demo`` (:class:`scripts.demo.DemoFlow`), so the demo
and this test cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from scripts.demo import DemoFlow, DemoOptions, Reporter, Snapshot
from tests.e2e.conftest import RunningStack

IMAGES = 10


@dataclass
class Recorder(Reporter):
    """Keeps what the flow reports, to check what the user would have seen."""

    steps: list[str] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    scaling_seen: list[tuple[int, int, int]] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)

    def step(self, number: int, title: str) -> None:
        self.steps.append(title)

    def upload_advanced(self, name: str, status: str) -> None:
        self.uploads.append(status)

    def watch(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)

    def scaling(self, desired: int, actual: int, running: int, waited_s: float) -> None:
        self.scaling_seen.append((desired, actual, running))


async def test_uploaded_digits_are_prelabelled_reviewed_billed_and_the_service_idles_at_zero(
    stack: RunningStack,
) -> None:
    recorder = Recorder()
    options = DemoOptions(
        images=IMAGES,
        deadline_s=60,
        cooldown_s=2,
        drain_s=2,
        scale_down_timeout_s=30,
        poll_s=0.2,
        approve=5,
        correct=1,
        budget=Decimal("5.00"),
    )

    result = await DemoFlow(stack.endpoints, options, recorder).run()

    assert len(recorder.steps) == 8
    assert recorder.uploads == ["uploaded"] * IMAGES
    assert result.uploaded == IMAGES
    # The service idled at zero, woke for the work, predicted everything once.
    assert result.replicas_at_deploy == 0
    assert result.executions["success"] == IMAGES, result.executions
    assert sum(result.executions.values()) == IMAGES
    assert result.cold_start_executions >= 1
    assert result.cold_start_s is not None
    assert result.cold_start_s > 0
    assert max(s.actual_replicas for s in recorder.snapshots) == 1
    # One classification per image, stored and fed into the task.
    assert result.annotations == IMAGES
    assert result.compared == IMAGES
    # The first held-out digits: the catalog model gets 9 of 10 of these right.
    assert result.correct >= 8, result.confusions
    assert result.task_progress["total"] == IMAGES
    assert result.task_progress["counts"] == {
        "pending-review": IMAGES - 6,
        "approved": 5,
        "corrected": 1,
        "discarded": 0,
    }
    assert result.acceptance_rate == pytest.approx(5 / 6)
    # Billed from the replica's own start/stop events; the budget went down by the cost.
    # One prediction per image, plus the forced re-predictions of the browser-style batch.
    assert result.predictions == IMAGES + sum(result.forced.values())
    assert result.runtime_seconds > 0
    assert result.cost > 0
    assert Decimal(str(result.budget["spent"])) == result.cost
    # Back at zero after the cooldown.
    assert recorder.scaling_seen[-1] == (0, 0, 0)
    assert result.scaled_to_zero_s is not None
