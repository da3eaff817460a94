"""``make demo``: a real pre-labeling job, end to end (see :mod:`prelabel_demo`).

    .venv/bin/python scripts/demo.py [--images 50] [--deadline 180] [--cooldown 10]

The code lives in the ``prelabel_demo`` package beside this file (the flow on the SDK,
its presentation on a terminal); this file runs its command line. The names below are
re-exported for ``tests/e2e``, which imports ``scripts.demo``.
"""

from prelabel_demo import (
    DemoFlow,
    DemoOptions,
    DemoResult,
    Endpoints,
    Reporter,
    Snapshot,
    StepFailedError,
)
from prelabel_demo.cli import app

__all__ = [
    "DemoFlow",
    "DemoOptions",
    "DemoResult",
    "Endpoints",
    "Reporter",
    "Snapshot",
    "StepFailedError",
]

if __name__ == "__main__":
    app()
