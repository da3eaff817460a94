"""The hooks through which the job tells its user what happens (nothing, by default)."""

from __future__ import annotations

from typing import Any

from prelabel_client import UploadProgress
from prelabel_demo.results import Snapshot


class Reporter:
    """What the job tells its user; every hook does nothing here (the e2e test's view)."""

    def step(self, number: int, title: str) -> None:
        """Step ``number`` begins."""

    def done(self, message: str) -> None:
        """The current step succeeded."""

    def upload_started(self, total: int) -> None:
        """``total`` files are about to go up."""

    def upload_advanced(self, name: str, status: str) -> None:
        """One file was uploaded, skipped or failed."""

    def upload_finished(self) -> None:
        """Every file is settled."""

    def watch(self, snapshot: Snapshot) -> None:
        """The pipeline as of now (called every poll)."""

    def watch_finished(self) -> None:
        """The watch is over."""

    def scaling(self, desired: int, actual: int, running: int, waited_s: float) -> None:
        """While waiting for scale-down: the replica counts now."""

    def close(self) -> None:
        """The job ended (done or failed): stop anything still drawing."""


class UploadHooks(UploadProgress):
    """The SDK's progress hooks, forwarded to a reporter."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def finished(self, outcome: Any) -> None:
        self.reporter.upload_advanced(outcome.file.name, outcome.status)
