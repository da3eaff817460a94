"""Routes of annotations: list, create (by hand), get, edit, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from annotation_service.api.dependencies import Limit, Offset, Project, Repo
from annotation_service.api.schemas import AnnotationIn, AnnotationPatch
from annotation_service.domain import AnnotationError
from annotation_service.usecases import annotations as usecases

router = APIRouter(tags=["annotations"])


@router.get("/annotations")
async def list_annotations(
    project: Project,
    repository: Repo,
    item_id: str | None = None,
    dataset_id: str | None = None,
    include_deleted: bool = False,
    limit: Limit = 1000,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    """Annotations of an item or a dataset (current versions, with the model's original)."""
    return await repository.list_annotations(
        project,
        item_id=item_id,
        dataset_id=dataset_id,
        include_deleted=include_deleted,
        limit=limit,
        offset=offset,
    )


@router.post("/annotations", status_code=201)
async def create_annotation(
    body: AnnotationIn, project: Project, repository: Repo
) -> dict[str, Any]:
    """Annotate an item by hand (source ``human``)."""
    return await usecases.create_human_annotation(
        repository,
        project,
        body.item_id,
        body.type,
        body.label,
        body.coordinates,
        body.text,
        body.author,
    )


@router.get("/annotations/{annotation_id}")
async def get_annotation(annotation_id: str, project: Project, repository: Repo) -> dict[str, Any]:
    """One annotation."""
    return await repository.get_annotation(project, annotation_id)


@router.patch("/annotations/{annotation_id}")
async def edit_annotation(
    annotation_id: str, body: AnnotationPatch, project: Project, repository: Repo
) -> dict[str, Any]:
    """Edit an annotation; a model annotation keeps its original for comparison."""
    changes = body.model_dump(exclude_unset=True, exclude={"editor"})
    if not changes:
        raise AnnotationError("nothing to change: give type, label, coordinates or text")
    return await usecases.edit_annotation(repository, project, annotation_id, changes, body.editor)


@router.delete("/annotations/{annotation_id}", status_code=204)
async def delete_annotation(
    annotation_id: str,
    project: Project,
    repository: Repo,
    editor: Annotated[str, Query(min_length=1, max_length=200)] = "human",
) -> Response:
    """Delete an annotation (kept, flagged deleted, for comparison with the model)."""
    await usecases.delete_annotation(repository, project, annotation_id, editor)
    return Response(status_code=204)
