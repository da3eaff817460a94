"""References across projects through the whole stack: a task may only be fed from the
caller's own model services (annotation asks model-serving with the caller's key).
Another project's service answers 404, as its dataset does, and nothing is created."""

from __future__ import annotations

import pytest

from prelabel_client import Prelabel
from prelabel_client.errors import NotFoundError
from tests.e2e.conftest import RunningStack, digits_project


@pytest.mark.e2e
async def test_a_task_fed_from_another_projects_service_is_refused(stack: RunningStack) -> None:
    endpoints, admin_key = stack.client_endpoints, stack.endpoints.admin_key
    async with digits_project(endpoints, admin_key, "e2e-owner") as owner:
        async with Prelabel(endpoints, "admin-only", admin_key=admin_key) as admin:
            other = await admin.projects.create("e2e-other")
            key = await admin.projects.create_api_key(other.id, "e2e")
        async with Prelabel(endpoints, str(key.key)) as intruder:
            theirs = await intruder.datasets.create("theirs")
            with pytest.raises(NotFoundError) as refused:
                await intruder.tasks.create(
                    "steal", theirs.id, auto_add_from_services=[owner.service_id]
                )
            assert await intruder.tasks.list() == []
        # The owner may: its own dataset, its own service.
        task = await owner.client.tasks.create(
            "mine", owner.dataset.id, auto_add_from_services=[owner.service_id]
        )

    assert "model service" in refused.value.message, refused.value
    assert owner.service_id in refused.value.message, refused.value
    assert task.auto_add_from_services == [owner.service_id]
