"""Triton model configurations (``config.pbtxt``): parsing, rendering, and checking them
against the spec that will drive the model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

from google.protobuf import text_format  # type: ignore[import-untyped]
from tritonclient.grpc import model_config_pb2

from model_serving_service.domain.archives import version_folders
from model_serving_service.domain.errors import InvalidModelError
from model_serving_service.domain.specs import ModelSpec

TRITON_DTYPES_FOR_INPUT = {
    "encoded": {"TYPE_STRING"},
    "FP32": {"TYPE_FP32"},
    "UINT8": {"TYPE_UINT8"},
}


def parse_model_config(text: str) -> model_config_pb2.ModelConfig:
    """Parse ``config.pbtxt`` (protobuf text format) into Triton's ``ModelConfig``."""
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise InvalidModelError([f"config.pbtxt does not parse: {exc}"]) from exc


def render_model_config(config: model_config_pb2.ModelConfig) -> str:
    """Serialise a ``ModelConfig`` back to protobuf text format."""
    text: str = text_format.MessageToString(config)
    return text


def dtype_name(value: int) -> str:
    """``TYPE_FP32`` for Triton's data type enum value."""
    name: str = model_config_pb2.DataType.Name(value)
    return name


def _dims_match(declared: Sequence[int], expected: Sequence[int]) -> bool:
    if len(declared) != len(expected):
        return False
    return all(d == -1 or d == e for d, e in zip(declared, expected, strict=True))


def validate_model_config(config: model_config_pb2.ModelConfig, spec: ModelSpec) -> list[str]:
    """Problems between a Triton model configuration and the spec that will drive it.

    Empty when the model can be deployed: backend or platform named, batching on, the
    spec's input tensor declared with a fitting type and shape, every adapter output
    declared, classification outputs as wide as the labels.
    """
    problems: list[str] = []
    if not config.backend and not config.platform:
        problems.append("config.pbtxt names neither a backend nor a platform")
    if config.max_batch_size < 1:
        problems.append("config.pbtxt max_batch_size must be >= 1: workers send a batch dimension")
    elif spec.max_batch_size > config.max_batch_size:
        problems.append(
            f"max_batch_size {spec.max_batch_size} exceeds the model's "
            f"max_batch_size {config.max_batch_size}"
        )
    inputs = {i.name: i for i in config.input}
    declared = inputs.get(spec.input.tensor)
    if declared is None:
        problems.append(
            f"input tensor {spec.input.tensor!r} is not declared in config.pbtxt "
            f"(declared: {sorted(inputs)})"
        )
    else:
        wanted = TRITON_DTYPES_FOR_INPUT[
            "encoded" if spec.input.kind == "encoded" else spec.input.dtype
        ]
        got = dtype_name(declared.data_type)
        if got not in wanted:
            problems.append(
                f"input {declared.name!r} is {got}; input kind '{spec.input.kind}' needs "
                f"{' or '.join(sorted(wanted))}"
            )
        dims = list(declared.reshape.shape) if declared.HasField("reshape") else []
        dims = list(declared.dims) or dims
        if not _dims_match(dims, spec.input.tensor_dims()):
            problems.append(
                f"input {declared.name!r} has dims {dims}; the spec sends "
                f"{spec.input.tensor_dims()} per item"
            )
        extra = sorted(set(inputs) - {spec.input.tensor} - _optional_inputs(config))
        if extra:
            problems.append(f"inputs {extra} would receive nothing (only one input is fed)")
    outputs = {o.name: o for o in config.output}
    for role, tensor in sorted(spec.adapter.outputs.items()):
        out = outputs.get(tensor)
        if out is None:
            problems.append(
                f"adapter output {role!r} -> {tensor!r} is not declared in config.pbtxt "
                f"(declared: {sorted(outputs)})"
            )
            continue
        if role == "texts" and dtype_name(out.data_type) != "TYPE_STRING":
            problems.append(f"output {tensor!r} (texts) must be TYPE_STRING")
        if role == "scores" and spec.adapter.type == "classification":
            dims = list(out.dims)
            if len(dims) != 1 or (dims[0] != -1 and dims[0] != len(spec.labels)):
                problems.append(
                    f"output {tensor!r} has dims {dims}; classification needs "
                    f"[{len(spec.labels)}] (one score per label, labels: {len(spec.labels)})"
                )
    return problems


def _optional_inputs(config: model_config_pb2.ModelConfig) -> set[str]:
    return {i.name for i in config.input if i.optional}


def prepare_model_config(
    config: model_config_pb2.ModelConfig, triton_name: str
) -> model_config_pb2.ModelConfig:
    """A copy named ``triton_name`` (Triton wants the name to equal the directory name)."""
    out = model_config_pb2.ModelConfig()
    out.CopyFrom(config)
    out.name = triton_name
    return out


def backend_problems(
    config: model_config_pb2.ModelConfig, files: Iterable[PurePosixPath]
) -> list[str]:
    """Files the backend needs that the archive lacks (python: ``<version>/model.py``)."""
    files = list(files)
    versions = version_folders(files)
    if not versions:
        return ["the model has no numeric version folder (e.g. 1/ with the model file)"]
    if config.backend == "python":
        missing = [v for v in versions if PurePosixPath(str(v), "model.py") not in set(files)]
        if missing:
            return [f"python backend: version folder(s) {missing} lack model.py"]
    return []
