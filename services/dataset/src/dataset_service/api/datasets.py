"""Datasets: create, list, get, delete (each item deleted emits ``item.deleted.v1``)."""

from __future__ import annotations

from fastapi import APIRouter

from dataset_service.api.dependencies import Project_, Repo, Store
from dataset_service.api.schemas import DatasetIn
from dataset_service.repository import Dataset

router = APIRouter()


@router.post("/datasets", status_code=201, tags=["datasets"])
async def create_dataset(body: DatasetIn, project: Project_, repository: Repo) -> Dataset:
    """Create a dataset."""
    return await repository.create_dataset(project, body.name, body.description)


@router.get("/datasets", tags=["datasets"])
async def list_datasets(
    project: Project_, repository: Repo, name: str | None = None
) -> list[Dataset]:
    """The project's datasets (optionally the one with ``name``)."""
    return await repository.list_datasets(project, name)


@router.get("/datasets/{dataset_id}", tags=["datasets"])
async def get_dataset(dataset_id: str, project: Project_, repository: Repo) -> Dataset:
    """One dataset with its item count."""
    return await repository.get_dataset(project, dataset_id)


@router.delete("/datasets/{dataset_id}", status_code=204, tags=["datasets"])
async def delete_dataset(
    dataset_id: str, project: Project_, repository: Repo, items: Store
) -> None:
    """Delete a dataset and all its items (each emits ``item.deleted.v1``)."""
    for item in await repository.delete_dataset(project, dataset_id):
        await items.delete_blob_if_unused(item)
