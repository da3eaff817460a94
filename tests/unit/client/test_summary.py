"""The upload summary: counts, exit status, grouped reasons."""

from __future__ import annotations

from pathlib import Path

from prelabel_client.plan import LocalFile
from prelabel_client.summary import FileOutcome, UploadSummary


def _outcome(name: str, status: str, reason: str = "", size: int = 10) -> FileOutcome:
    return FileOutcome(LocalFile(Path(name), "/", size), status, reason)  # type: ignore[arg-type]


def test_counts_and_bytes_by_status() -> None:
    summary = UploadSummary(
        [
            _outcome("a", "uploaded", size=5),
            _outcome("b", "skipped", "same content already in /"),
            _outcome("c", "uploaded", size=7),
            _outcome("d", "failed", "HTTP 400: file is empty"),
        ]
    )

    assert summary.counts() == {"uploaded": 2, "skipped": 1, "failed": 1}
    assert summary.uploaded_bytes == 12
    assert [o.file.path.name for o in summary.skipped] == ["b"]
    assert not summary.ok
    assert summary.exit_code == 8  # partial failure


def test_nothing_failed_means_exit_status_zero() -> None:
    summary = UploadSummary([_outcome("a", "uploaded"), _outcome("b", "skipped")])

    assert summary.ok
    assert summary.exit_code == 0
    assert UploadSummary().counts() == {"uploaded": 0, "skipped": 0, "failed": 0}


def test_failure_reasons_are_grouped_most_common_first() -> None:
    summary = UploadSummary(
        [
            _outcome("a", "failed", "HTTP 415: unsupported"),
            _outcome("b", "failed", "HTTP 400: file is empty"),
            _outcome("c", "failed", "HTTP 415: unsupported"),
            _outcome("d", "uploaded"),
        ]
    )

    assert summary.failure_reasons() == [
        ("HTTP 415: unsupported", 2),
        ("HTTP 400: file is empty", 1),
    ]
