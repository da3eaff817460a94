"""The five services started once for the fuzz and isolation tests (``tests/fuzz``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from common.settings import S3SettingsMixin
from tests.fuzz.stack import FuzzStack, ThreadedStack


@pytest.fixture(scope="session")
def fuzz_stack(
    database_url: str,
    amqp_url: str,
    s3_settings: S3SettingsMixin,
    triton_url: str,
    triton_grpc_url: str,
) -> Iterator[FuzzStack]:
    with ThreadedStack(
        database_url=database_url,
        amqp_url=amqp_url,
        s3_settings=s3_settings,
        triton_url=triton_url,
        triton_grpc_url=triton_grpc_url,
    ) as stack:
        yield stack
