"""Exports of a dataset's or a task's current annotations: COCO JSON or JSON lines."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from annotation_service import domain
from annotation_service.domain import AnnotationError
from annotation_service.repository import Repository

ExportFormat = Literal["coco", "jsonl"]

DEFAULT_TASK_STATUSES = ("pending-review", "approved", "corrected")
"""What a task export holds unless asked: everything but discarded items."""


@dataclass(frozen=True)
class Export:
    """What an export selected: the images and their current annotations (API views)."""

    images: list[domain.ImageInfo]
    annotations: list[dict[str, Any]]

    def json_lines(self) -> Iterator[bytes]:
        """One annotation per line."""
        for ann in self.annotations:
            yield json.dumps(ann, default=_json_default).encode() + b"\n"

    def coco(self, description: str) -> dict[str, Any]:
        """A COCO document; what COCO cannot hold is counted in ``info.prelabel_skipped``."""
        export = domain.to_coco(
            self.images,
            (
                domain.ExportAnnotation(
                    a["id"],
                    a["item_id"],
                    a["type"],
                    a["label"],
                    a["coordinates"],
                    a["confidence"],
                    a["source"],
                )
                for a in self.annotations
            ),
            description=description,
            created=datetime.now(UTC),
        )
        document = export.document
        document["info"]["prelabel_skipped"] = export.skipped
        return document


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


async def export_rows(
    repo: Repository,
    project_id: str,
    dataset_id: str,
    *,
    limit: int,
    task_id: str | None = None,
    statuses: Sequence[str] = (),
) -> Export:
    """Images and current annotations of a dataset, or of a task's items; refused (413)
    over ``limit`` items."""
    if task_id is not None:
        images = await repo.task_images(task_id, statuses)
    else:
        images = await repo.dataset_images(project_id, dataset_id)
    if len(images) > limit:
        raise AnnotationError(f"export of {len(images)} items exceeds the limit of {limit}", 413)
    annotations = await repo.current_annotations(
        project_id, [image.item_id for image in images], dataset_id
    )
    return Export(images, annotations)
