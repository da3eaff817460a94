"""Background tasks that stop when told to.

A loop that logs and retries on ``Exception`` can swallow its own cancellation: when the
cancel lands inside a client library that turns it into one of its own errors (aiormq
closing a channel, for one), the loop logs a warning, sleeps and goes on, and whoever
awaits the cancelled task waits for good. That held a service's shutdown, and a test's
teardown, until a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib


def raise_if_cancelling() -> None:
    """In an ``except Exception`` of a retry loop: raise ``CancelledError`` when the
    current task was asked to stop, whatever the error the cancel turned into."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop_task(task: asyncio.Task[object] | None, timeout: float = 10.0) -> bool:
    """Cancel ``task`` and wait for it to end, at most ``timeout`` seconds; whether it
    ended (a task that ignores the cancel is left behind, not waited on for good)."""
    if task is None:
        return True
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    for finished in done:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            finished.result()
    return bool(done)
