"""Persistence of projects, keys, datasets and items, one module per aggregate; events
go to the outbox in the same transaction as the change they announce. ``dql_sql``
compiles DQL filters for the item queries."""

from __future__ import annotations

from dataset_service.repository.datasets import Dataset, Datasets
from dataset_service.repository.directories import Directories, Directory, DirectoryListing
from dataset_service.repository.items import Items, NewItem
from dataset_service.repository.projects import ApiKey, Project, Projects, hash_key


class Repository(Projects, Datasets, Items, Directories):
    """The dataset service's repository: every aggregate's part on one pool."""


__all__ = [
    "ApiKey",
    "Dataset",
    "Directory",
    "DirectoryListing",
    "NewItem",
    "Project",
    "Repository",
    "hash_key",
]
