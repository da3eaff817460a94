"""Projects and their API keys (stored as hashes; known keys cached briefly)."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import datetime

import asyncpg
from pydantic import BaseModel

from common.ids import new_id
from dataset_service.domain import ConflictError, NotFoundError
from dataset_service.repository.base import Store

KEY_CACHE_SECONDS = 30.0


def hash_key(key: str) -> str:
    """How an API key is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


class Project(BaseModel):
    """A project: owner of datasets, keys, models and budgets."""

    id: str
    name: str
    created_at: datetime


class ApiKey(BaseModel):
    """A project API key; ``key`` is only ever shown once, at creation."""

    id: str
    project_id: str
    name: str
    created_at: datetime
    key: str | None = None


class Projects(Store):
    """Projects and API keys."""

    async def create_project(self, name: str) -> Project:
        try:
            row = await self.pool.fetchrow(
                "INSERT INTO projects (id, name) VALUES ($1, $2) RETURNING *", new_id("prj"), name
            )
        except asyncpg.UniqueViolationError as exc:
            raise ConflictError(f"a project named {name!r} already exists") from exc
        return Project(**dict(row))

    async def create_api_key(self, project_id: str, name: str) -> ApiKey:
        key = "pk_" + secrets.token_urlsafe(32)
        try:
            row = await self.pool.fetchrow(
                """INSERT INTO api_keys (id, project_id, name, key_hash) VALUES ($1, $2, $3, $4)
                   RETURNING id, project_id, name, created_at""",
                new_id("key"),
                project_id,
                name,
                hash_key(key),
            )
        except asyncpg.ForeignKeyViolationError as exc:
            raise NotFoundError(f"project {project_id} not found") from exc
        return ApiKey(**dict(row), key=key)

    async def project_for_key(self, key: str) -> str | None:
        """The key's project. Known keys are cached briefly: every request carries one."""
        digest = hash_key(key)
        cached = self.key_cache.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        project: str | None = await self.pool.fetchval(
            "SELECT project_id FROM api_keys WHERE key_hash = $1", digest
        )
        if project is not None:
            self.key_cache[digest] = (time.monotonic() + KEY_CACHE_SECONDS, project)
        return project
