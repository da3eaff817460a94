"""``SyncPrelabel``: the async SDK for scripts and notebooks that do not run an event loop.

::

    with SyncPrelabel.from_env() as client:
        for dataset in client.datasets.list():
            print(dataset.name)
        for item in client.items.iter(dataset.id, {"dir": "/batch1/**"}):
            print(item.filename)

Every method of :class:`~prelabel_client.sdk.Prelabel`'s nouns is there with the same
arguments; coroutines are run to completion and async iterators become iterators,
on one private event loop (so connections are reused between calls).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Self

from prelabel_client.sdk import Prelabel


class _SyncNoun:
    """A noun of the async client whose methods block."""

    def __init__(self, runner: asyncio.Runner, target: Any) -> None:
        self._runner = runner
        self._target = target

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute
        runner = self._runner

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            if inspect.iscoroutine(result):
                return runner.run(result)
            if inspect.isasyncgen(result) or isinstance(result, AsyncIterator):
                return _iterate(runner, result)
            return result

        call.__doc__ = attribute.__doc__
        call.__name__ = name
        return call


def _iterate(runner: asyncio.Runner, iterator: AsyncIterator[Any]) -> Iterator[Any]:
    async def step() -> Any:
        return await anext(iterator)

    while True:
        try:
            yield runner.run(step())
        except StopAsyncIteration:
            return


class SyncPrelabel:
    """The blocking twin of :class:`~prelabel_client.sdk.Prelabel` (same arguments)."""

    NOUNS = (
        "projects",
        "datasets",
        "items",
        "models",
        "services",
        "triggers",
        "executions",
        "batches",
        "pipelines",
        "annotations",
        "tasks",
        "billing",
        "dead_letters",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._runner = asyncio.Runner()
        # The async client binds its connection pools to the loop that first uses them.
        self._client: Prelabel = self._runner.run(_build(args, kwargs))
        for noun in self.NOUNS:
            setattr(self, noun, _SyncNoun(self._runner, getattr(self._client, noun)))

    @classmethod
    def from_env(cls, **options: Any) -> SyncPrelabel:
        """A client from the ``PRELABEL_*`` environment variables."""
        from prelabel_client.settings import ClientSettings

        settings = ClientSettings()
        admin = settings.admin_key.get_secret_value() if settings.admin_key else None
        return cls(
            settings.endpoints,
            settings.api_key.get_secret_value(),
            admin_key=admin,
            timeout_s=settings.timeout_s,
            **options,
        )

    @property
    def client(self) -> Prelabel:
        """The async client underneath."""
        return self._client

    def whoami(self) -> str:
        """The project id of the API key."""
        return self._runner.run(self._client.whoami())

    def close(self) -> None:
        """Close the connections and the event loop."""
        try:
            self._runner.run(self._client.aclose())
        finally:
            self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # Declared for type checkers: the nouns are set in __init__.
        raise AttributeError(name)


async def _build(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Prelabel:
    return Prelabel(*args, **kwargs)
