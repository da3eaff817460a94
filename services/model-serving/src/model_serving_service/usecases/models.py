"""Models: install from the catalog, register BYOM, read and delete."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from common.ids import new_id
from model_serving_service.adapters.triton_config import (
    backend_problems,
    parse_model_config,
    prepare_model_config,
    validate_model_config,
)
from model_serving_service.catalog import CATALOG
from model_serving_service.domain.archives import model_root
from model_serving_service.domain.errors import (
    ConflictError,
    InvalidModelError,
    NotFoundError,
)
from model_serving_service.domain.specs import MODEL_NAME_RE, SpecOverrides, parse_spec
from model_serving_service.repository.models import Model
from model_serving_service.usecases.archives import unpack_archive
from model_serving_service.usecases.base import UseCaseBase


class ModelUseCases(UseCaseBase):
    """Models of a project."""

    async def install(
        self,
        project_id: str,
        catalog_name: str,
        *,
        name: str | None,
        overrides: SpecOverrides,
    ) -> Model:
        """Copy a catalog model into the project (its own id, Triton model and settings)."""
        entry = CATALOG.get(catalog_name)
        if entry is None:
            raise NotFoundError(
                f"catalog has no model {catalog_name!r} (available: {', '.join(sorted(CATALOG))})"
            )
        spec = overrides.apply(entry.spec)
        model_id = new_id("mdl")
        config = entry.triton_config(model_id, spec.max_batch_size)
        await self.files.write(model_id, config, {"1/model.py": entry.model_file})
        return await self._insert(
            project_id=project_id,
            model_id=model_id,
            name=name or entry.name,
            version=entry.version,
            source="catalog",
            catalog_name=entry.name,
            spec_doc=spec.model_dump(mode="json"),
        )

    async def register(
        self,
        project_id: str,
        *,
        name: str,
        version: str,
        archive: bytes,
        spec_doc: Mapping[str, Any],
    ) -> Model:
        """Register a bring-your-own Triton model directory with its output adapter."""
        if not MODEL_NAME_RE.match(name):
            raise InvalidModelError(["name: letters, digits, '.', '_' and '-' (max 100)"])
        if not MODEL_NAME_RE.match(version):
            raise InvalidModelError(["version: letters, digits, '.', '_' and '-' (max 100)"])
        spec = parse_spec(spec_doc)
        members = await asyncio.to_thread(unpack_archive, archive, self.settings.max_unpacked_bytes)
        root = model_root(members)
        relative = {
            PurePosixPath(*path.parts[len(root.parts) :]): data
            for path, data in members.items()
            if path.parts[: len(root.parts)] == root.parts and path != root
        }
        config_text = relative.pop(PurePosixPath("config.pbtxt")).decode("utf-8", errors="replace")
        config = parse_model_config(config_text)
        problems = validate_model_config(config, spec) + backend_problems(config, relative)
        if problems:
            raise InvalidModelError(problems)
        model_id = new_id("mdl")
        await self.files.write(
            model_id,
            prepare_model_config(config, model_id),
            {str(path): data for path, data in relative.items()},
        )
        return await self._insert(
            project_id=project_id,
            model_id=model_id,
            name=name,
            version=version,
            source="byom",
            catalog_name=None,
            spec_doc=spec.model_dump(mode="json"),
        )

    async def _insert(self, *, spec_doc: dict[str, Any], **fields: Any) -> Model:
        spec = parse_spec(spec_doc)
        model = await self.repo.insert_model(triton_name=fields["model_id"], spec=spec, **fields)
        if model is None:
            await self.files.remove(fields["model_id"])
            raise ConflictError(
                f"the project already has a model {fields['name']!r} version "
                f"{fields['version']!r}; choose another name"
            )
        return model

    async def get_model(self, project_id: str, model_id: str) -> Model:
        """A model of the project (404 otherwise)."""
        model = await self.repo.get_model(model_id, project_id)
        if model is None:
            raise NotFoundError(f"model {model_id} not found")
        return model

    async def delete_model(self, project_id: str, model_id: str) -> None:
        """Remove a model no service uses: unload it and delete its directory."""
        model = await self.get_model(project_id, model_id)
        services = await self.repo.model_services_in_use(model.id)
        if services:
            raise ConflictError(f"model {model.id} is deployed by {', '.join(services)}")
        if await self.holds.holders(model.triton_name):
            raise ConflictError(f"model {model.id} is in use on Triton")
        await self.repo.delete_model(model.id)
        await self.holds.control.unload(model.triton_name)
        await self.files.remove(model.triton_name)
