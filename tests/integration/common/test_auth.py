from common.auth import KeyIntrospector
from tests.conftest import AuthService


async def test_introspection_maps_keys_to_their_project(auth_service: AuthService) -> None:
    project, key = await auth_service.new_project()
    other_project, other_key = await auth_service.new_project()
    introspector = KeyIntrospector(auth_service.url)
    try:
        assert await introspector.project_of(key) == project
        assert await introspector.project_of(other_key) == other_project
        assert await introspector.project_of("pk_unknown") is None
    finally:
        await introspector.close()
