"""``make demo``: a real pre-labeling job, end to end, against the running services.

    .venv/bin/python scripts/demo.py [--images 50] [--deadline 180] [--cooldown 10]

With the prelabel SDK, through the one URL (nginx, ``PRELABEL_URL``), as a user would, it:

1. creates a project, an API key (dataset admin key), a dataset ``demo-<timestamp>``
   and the project's automation budget;
2. installs the catalog's ``digits-classifier`` and deploys it as a model service with
   0..1 replicas and a short cooldown, and waits until it is ready;
3. creates a labeling task;
4. creates and starts a pipeline, Dataset (trigger: new images under ``/digits``) ->
   Predict (the service) -> Task;
5. renders handwritten digits the model never saw (scikit-learn's held-out samples) as
   PNGs and uploads them with the prelabel SDK, each with ``{"truth": <digit>}``;
6. watches executions, replicas (0 -> 1), annotations, the pipeline and the task fill up;
7. runs a browser-style predict on a DQL filter over the same items: without ``force``
   every item is skipped (this model version already predicted it through the pipeline),
   with ``force`` they are predicted again;
8. summarises: cold start, accuracy against the truth, a few reviews (approve, correct)
   and the acceptance rate, billing usage and cost per accepted label, and the service
   scaling back to 0.

The proxy's URL and the admin key come from the stack's configuration
(:class:`prelabel_stack.StackConfig`, the same ``PRELABEL_*`` variables ``make up``
reads). :class:`DemoFlow` (``flow``) is the job itself, without presentation; it reports
through :class:`Reporter` hooks, which ``presentation`` draws on a terminal. The
end-to-end test (``tests/e2e``) runs the same flow against services it starts itself.
Any failed step stops the demo with the service's answer and a non-zero exit status.
"""

from prelabel_demo.flow import DemoFlow
from prelabel_demo.reporting import Reporter
from prelabel_demo.results import (
    DemoOptions,
    DemoResult,
    Endpoints,
    Review,
    Snapshot,
    StepFailedError,
)

__all__ = [
    "DemoFlow",
    "DemoOptions",
    "DemoResult",
    "Endpoints",
    "Reporter",
    "Review",
    "Snapshot",
    "StepFailedError",
]
