"""The result of an upload: what went up, what was skipped, what failed and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from prelabel_client.errors import ExitCode
from prelabel_client.plan import LocalFile

Status = Literal["uploaded", "skipped", "failed"]


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file."""

    file: LocalFile
    status: Status
    reason: str = ""
    """Why it was skipped or failed (the server's message for a rejected file)."""
    item_id: str | None = None
    """The item holding the content (new, or the existing one for a skip)."""
    sha256: str | None = None


@dataclass
class UploadSummary:
    """Every file's outcome, in the order the files were given."""

    outcomes: list[FileOutcome] = field(default_factory=list)
    elapsed_s: float = 0.0

    def of(self, status: Status) -> list[FileOutcome]:
        """The outcomes with ``status``."""
        return [outcome for outcome in self.outcomes if outcome.status == status]

    @property
    def uploaded(self) -> list[FileOutcome]:
        """Files that became new items."""
        return self.of("uploaded")

    @property
    def skipped(self) -> list[FileOutcome]:
        """Files whose content was already in their remote directory."""
        return self.of("skipped")

    @property
    def failed(self) -> list[FileOutcome]:
        """Files that did not make it, each with a reason."""
        return self.of("failed")

    @property
    def ok(self) -> bool:
        """Whether nothing failed."""
        return not self.failed

    @property
    def exit_code(self) -> int:
        """The CLI's exit status: 8 (partial failure) when any file failed."""
        return ExitCode.OK if self.ok else ExitCode.PARTIAL

    @property
    def uploaded_bytes(self) -> int:
        """Bytes of the uploaded files."""
        return sum(outcome.file.size for outcome in self.uploaded)

    def counts(self) -> dict[Status, int]:
        """How many files ended in each status (all three keys present)."""
        counted = Counter(outcome.status for outcome in self.outcomes)
        return {
            "uploaded": counted["uploaded"],
            "skipped": counted["skipped"],
            "failed": counted["failed"],
        }

    def failure_reasons(self) -> list[tuple[str, int]]:
        """Distinct failure reasons with how many files had each, most common first."""
        return Counter(outcome.reason for outcome in self.failed).most_common()
