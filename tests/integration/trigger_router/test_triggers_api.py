"""Triggers over HTTP: validation at create time, CRUD, pause/resume, project isolation."""

from __future__ import annotations

from common.contracts import ServiceUndeployed
from common.testing.waits import wait_until
from common.topology import MODEL_SERVING
from tests.integration.trigger_router.conftest import Router


def _spec(service_id: str, **overrides: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "resource": "Item",
        "actions": ["Created", "MetadataUpdated"],
        "execution_mode": "Once",
        "filter": {"metadata.system.mimetype": "image/*", "dir": "/batch1/**"},
        "operation": {"type": "predict", "service_id": service_id},
    }
    spec.update(overrides)
    return spec


async def test_create_validates_filter_service_and_actions(router: Router) -> None:
    service = await router.deploy()
    other_project, _other_key = await router.auth_service.new_project()
    foreign = await router.deploy(project_id=other_project)

    async def create(spec: dict[str, object], name: str = "t") -> tuple[int, object]:
        response = await router.http.post(
            "/triggers", json={"name": name, "spec": spec}, headers=router.auth()
        )
        return response.status_code, response.json()

    bad_filter = await create(_spec(service, filter={"metadata.user.score": {"$gt": [1]}}))
    no_service = await create(_spec("svc_nope"))
    foreign_service = await create(_spec(foreign))
    bad_action = await create(_spec(service, actions=["Exploded"]))
    bad_mode = await create(_spec(service, execution_mode="Sometimes"))
    no_actions = await create(_spec(service, actions=[]))
    created = await create(_spec(service), name="ocr-new-images")
    duplicate_name = await create(_spec(service), name="ocr-new-images")

    assert bad_filter[0] == 400
    assert "invalid filter at /metadata.user.score/$gt" in str(bad_filter[1])
    assert no_service == (404, {"detail": "model service svc_nope does not exist in this project"})
    assert foreign_service == (
        404,
        {"detail": f"model service {foreign} does not exist in this project"},
    )
    assert bad_action[0] == 422
    assert bad_mode[0] == 422
    assert no_actions[0] == 422
    assert created[0] == 201
    assert duplicate_name[0] == 409
    trigger = created[1]
    assert isinstance(trigger, dict)
    assert trigger["active"] is True
    assert trigger["status"] == "active"
    assert trigger["spec"]["actions"] == ["Created", "MetadataUpdated"]
    assert trigger["spec"]["operation"] == {"type": "predict", "service_id": service}


async def test_crud_pause_resume_and_isolation(router: Router) -> None:
    service = await router.deploy()
    trigger = await router.create_trigger(service, name="first", mode="Once")
    tid = trigger["id"]
    _other_project, other_key = await router.auth_service.new_project()

    paused = await router.http.post(f"/triggers/{tid}/pause", headers=router.auth())
    listed_paused = await router.http.get(
        "/triggers", params={"active": "false"}, headers=router.auth()
    )
    resumed = await router.http.post(f"/triggers/{tid}/resume", headers=router.auth())
    renamed = await router.http.patch(
        f"/triggers/{tid}",
        json={"name": "renamed", "spec": _spec(service, execution_mode="Always", filter={})},
        headers=router.auth(),
    )
    bad_patch = await router.http.patch(
        f"/triggers/{tid}", json={"spec": _spec(service, filter={"$or": []})}, headers=router.auth()
    )
    foreign_get = await router.http.get(f"/triggers/{tid}", headers=router.auth(other_key))
    foreign_delete = await router.http.delete(f"/triggers/{tid}", headers=router.auth(other_key))
    no_key = await router.http.get("/triggers")
    wrong_key = await router.http.get("/triggers", headers=router.auth("pk_wrong"))
    deleted = await router.http.delete(f"/triggers/{tid}", headers=router.auth())
    gone = await router.http.get(f"/triggers/{tid}", headers=router.auth())

    assert paused.json()["active"] is False
    assert [t["id"] for t in listed_paused.json()] == [tid]
    assert resumed.json()["active"] is True
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "renamed"
    assert renamed.json()["spec"]["execution_mode"] == "Always"
    assert bad_patch.status_code == 400
    assert (foreign_get.status_code, foreign_delete.status_code) == (404, 404)
    assert (no_key.status_code, wrong_key.status_code) == (401, 401)
    assert deleted.status_code == 204
    assert gone.status_code == 404


async def test_undeployed_service_fails_its_triggers_and_rejects_new_ones(router: Router) -> None:
    service = await router.deploy()
    trigger = await router.create_trigger(service)

    await router.publish(
        MODEL_SERVING, ServiceUndeployed(service_id=service, project_id=router.project_id)
    )

    async def failed() -> dict[str, object] | None:
        response = await router.http.get(f"/triggers/{trigger['id']}", headers=router.auth())
        body: dict[str, object] = response.json()
        return body if body["status"] == "failed" else None

    body = await wait_until(failed, timeout=10, message="trigger failed")
    assert body is not None
    assert body["status_reason"] == (
        f"model service {service} was undeployed; the trigger no longer runs"
    )
    again = await router.http.post(
        "/triggers", json={"name": "late", "spec": _spec(service)}, headers=router.auth()
    )
    resume = await router.http.post(f"/triggers/{trigger['id']}/resume", headers=router.auth())
    assert again.status_code == 409
    assert again.json()["detail"] == f"model service {service} is undeployed"
    assert resume.status_code == 409
