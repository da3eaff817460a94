"""The API key cache every service but dataset keeps is bounded (issue 13, hostile input):
made-up keys, each checked at the real dataset service, evict the oldest answers."""

from __future__ import annotations

import uuid

from common.auth import KeyIntrospector
from tests.fuzz.stack import FuzzStack


async def test_unknown_keys_cannot_grow_the_key_cache(fuzz_stack: FuzzStack) -> None:
    introspector = KeyIntrospector(fuzz_stack.urls["dataset"], ttl_seconds=300, max_entries=8)
    try:
        assert await introspector.project_of(fuzz_stack.alice.key) == fuzz_stack.alice.id
        for _ in range(40):
            assert await introspector.project_of(f"pk_{uuid.uuid4().hex}") is None
            assert introspector.cached <= 8
        assert introspector.cached == 8
        # Evicted, Alice's key is asked again and still known.
        assert await introspector.project_of(fuzz_stack.alice.key) == fuzz_stack.alice.id
    finally:
        await introspector.close()
