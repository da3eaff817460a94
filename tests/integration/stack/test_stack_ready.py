"""The local stack that ``scripts/stack.py up`` starts is really usable.

Runs after ``up`` (the Makefile starts the stack before pytest). Endpoints come
from ``stack.py status --json`` so the test and the script cannot disagree.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton_http
from botocore.config import Config
from botocore.session import get_session

REPO_ROOT = Path(__file__).resolve().parents[3]
STACK = REPO_ROOT / "scripts" / "stack.py"


def _stack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(STACK), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def endpoints() -> dict[str, str]:
    """What ``status --json`` says about the running stack."""
    done = _stack("status", "--no-services", "--json")
    assert done.stdout, done.stderr
    payload = json.loads(done.stdout)
    endpoints: dict[str, str] = payload["endpoints"]
    return endpoints


@pytest.fixture
def s3(endpoints: dict[str, str]) -> Any:
    """A botocore S3 client on the stack's SeaweedFS."""
    return get_session().create_client(
        "s3",
        endpoint_url=endpoints["s3_endpoint_url"],
        aws_access_key_id=endpoints["s3_access_key"],
        aws_secret_access_key=endpoints["s3_secret_key"],
        region_name=endpoints["s3_region"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


@pytest.fixture
def fresh_bucket(s3: Any) -> Iterator[str]:
    """A bucket made for this test, emptied and deleted afterwards."""
    name = f"stack-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    yield name
    for obj in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


def test_status_without_services_exits_zero() -> None:
    done = _stack("status", "--no-services")

    assert done.returncode == 0, done.stdout + done.stderr


def test_s3_put_get_round_trip_on_fresh_bucket(s3: Any, fresh_bucket: str) -> None:
    body = uuid.uuid4().bytes * 1000

    s3.put_object(Bucket=fresh_bucket, Key="dir/blob.bin", Body=body)
    got = s3.get_object(Bucket=fresh_bucket, Key="dir/blob.bin")

    assert got["Body"].read() == body
    listed = s3.list_objects_v2(Bucket=fresh_bucket, Prefix="dir/")
    assert [o["Key"] for o in listed["Contents"]] == ["dir/blob.bin"]


def test_stack_bucket_exists(s3: Any, endpoints: dict[str, str]) -> None:
    answer = s3.head_bucket(Bucket=endpoints["s3_bucket"])

    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200


MODEL_PY = """
import platform

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            version = np.array([platform.python_version().encode()], dtype=np.object_)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("Y", (x * 2 + 1).astype(np.float32)),
                        pb_utils.Tensor("PYTHON_VERSION", version),
                    ]
                )
            )
        return responses
"""

CONFIG_PBTXT = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "X", data_type: TYPE_FP32, dims: [ -1, 3 ] }} ]
output [
  {{ name: "Y", data_type: TYPE_FP32, dims: [ -1, 3 ] }},
  {{ name: "PYTHON_VERSION", data_type: TYPE_STRING, dims: [ 1 ] }}
]
instance_group [ {{ kind: KIND_CPU, count: 1 }} ]
"""


@pytest.fixture
def probe_model(endpoints: dict[str, str]) -> Iterator[str]:
    """A tiny Python-backend model written into the server's repository, removed after."""
    name = f"stack_probe_{uuid.uuid4().hex[:12]}"
    model_dir = Path(endpoints["triton_model_repository"]) / name
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.py").write_text(MODEL_PY)
    (model_dir / "config.pbtxt").write_text(CONFIG_PBTXT.format(name=name))
    yield name
    shutil.rmtree(model_dir, ignore_errors=True)


def test_triton_loads_infers_and_unloads_python_model(
    endpoints: dict[str, str], probe_model: str
) -> None:
    client = triton_http.InferenceServerClient(endpoints["triton_http_url"])
    assert client.is_server_ready()
    assert not client.is_model_ready(probe_model)

    client.load_model(probe_model)
    try:
        assert client.is_model_ready(probe_model)
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        request = triton_http.InferInput("X", list(x.shape), "FP32")
        request.set_data_from_numpy(x)

        result = client.infer(probe_model, [request])

        np.testing.assert_array_equal(result.as_numpy("Y"), x * 2 + 1)
        # The stub runs the venv's own interpreter: the libpython pitfall is handled.
        version = result.as_numpy("PYTHON_VERSION")
        assert version is not None
        assert version[0].decode() == platform.python_version()
    finally:
        client.unload_model(probe_model)
    _wait_for(lambda: not client.is_model_ready(probe_model), 30, "model unloaded")
    client.close()
