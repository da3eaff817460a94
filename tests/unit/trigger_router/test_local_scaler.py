"""The local scaler backend's process supervision, with stand-in replica processes
(no servers: ``idle_worker`` runs until SIGTERM)."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.testing.waits import wait_until
from trigger_router_service.adapters.scalers import (
    LocalReplica,
    LocalScaler,
    ScalerError,
    ServiceRef,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
SERVICE = ServiceRef("svc_local", "prj_1")


@pytest.fixture
async def scaler(tmp_path: Path) -> AsyncIterator[LocalScaler]:
    local = LocalScaler(
        module="tests.integration.trigger_router.idle_worker",
        extra_env={"PYTHONPATH": str(REPO_ROOT), "IDLE_WORKER_READY_DIR": str(tmp_path)},
        stop_seconds=10,
    )
    try:
        yield local
    finally:
        await local.close()


async def ready(directory: Path, replicas: list[LocalReplica]) -> None:
    """Wait until the replicas run their SIGTERM handler (they drain, not die)."""

    async def all_up() -> bool:
        return all((directory / r.replica_id).exists() for r in replicas)

    await wait_until(all_up, timeout=15, message="replicas up")


async def test_scale_up_down_and_real_state(scaler: LocalScaler, tmp_path: Path) -> None:
    await scaler.scale(SERVICE, 2)
    two = scaler.replicas(SERVICE.service_id)
    await ready(tmp_path, two)
    assert len({r.replica_id for r in two}) == 2
    assert await scaler.actual([SERVICE]) == {SERVICE.service_id: 2}
    assert scaler.requested(SERVICE.service_id) == 2

    await scaler.scale(SERVICE, 1)
    # The newest one got SIGTERM, drained and exited cleanly; the oldest stays.
    assert scaler.replicas(SERVICE.service_id) == [two[0]]
    await wait_until(
        lambda: _exited(two[1].process.returncode), timeout=10, message="stopped replica exits"
    )
    assert two[1].process.returncode == 0
    assert await scaler.actual([SERVICE]) == {SERVICE.service_id: 1}


async def test_a_crashed_replica_is_replaced_on_sync(scaler: LocalScaler) -> None:
    await scaler.scale(SERVICE, 1)
    [first] = scaler.replicas(SERVICE.service_id)
    os.kill(first.process.pid, signal.SIGKILL)
    await first.process.wait()
    assert await scaler.actual([SERVICE]) == {SERVICE.service_id: 0}

    await scaler.sync()

    [second] = scaler.replicas(SERVICE.service_id)
    assert second.replica_id != first.replica_id
    assert scaler.restarts == 1


async def test_close_stops_everything(scaler: LocalScaler, tmp_path: Path) -> None:
    await scaler.scale(SERVICE, 2)
    replicas = scaler.replicas(SERVICE.service_id)
    await ready(tmp_path, replicas)

    await scaler.close()

    assert [r.process.returncode for r in replicas] == [0, 0]
    assert await scaler.actual([SERVICE]) == {SERVICE.service_id: 0}


async def test_a_missing_interpreter_is_a_scaler_error() -> None:
    broken = LocalScaler(module="x", python="/nonexistent/python")
    with pytest.raises(ScalerError, match="cannot start x"):
        await broken.scale(SERVICE, 1)


async def _exited(returncode: int | None) -> bool:
    return returncode is not None


async def test_a_prewarmed_standby_becomes_the_next_replica(tmp_path: Path) -> None:
    local = LocalScaler(
        module="tests.integration.trigger_router.idle_worker",
        extra_env={"PYTHONPATH": str(REPO_ROOT), "IDLE_WORKER_READY_DIR": str(tmp_path)},
        stop_seconds=10,
        prewarm=True,
    )
    try:
        await local.sync()  # starts the standby
        standby = local._standby
        assert standby is not None

        await local.scale(SERVICE, 1)

        [replica] = local.replicas(SERVICE.service_id)
        assert replica.process.pid == standby.pid
        # It runs with the replica's own environment (the ready file is named after it).
        await ready(tmp_path, [replica])
        assert local._standby is not None
        assert local._standby.pid != standby.pid
        next_standby = local._standby
    finally:
        await local.close()
    assert replica.process.returncode == 0
    assert next_standby.returncode is not None
