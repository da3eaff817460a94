"""The built-in catalog ("marketplace"): models that run offline from weights shipped
inside PyPI packages, as Triton Python-backend models.

Each entry is a ``model.py`` template (``catalog_models/<slug>/model.py``, package data),
a Triton configuration generated here and a :class:`ModelSpec` (input type, labels,
adapter, batch size, timeout). Installing an entry into a project writes a fresh model
directory into the Triton model repository under the new model's own name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from tritonclient.grpc import model_config_pb2

from model_serving_service.domain.specs import AdapterSpec, InputSpec, ModelSpec

TEMPLATES = Path(str(files("model_serving_service") / "catalog_models"))


@dataclass(frozen=True)
class TensorDecl:
    """One declared tensor of a catalog model (dims without the batch dimension)."""

    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class CatalogModel:
    """One catalog entry."""

    name: str
    version: str
    description: str
    template: str
    spec: ModelSpec
    outputs: tuple[TensorDecl, ...]
    dynamic_batching: bool = False
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def model_file(self) -> Path:
        """The ``model.py`` template."""
        return TEMPLATES / self.template / "model.py"

    def triton_config(self, triton_name: str, max_batch_size: int) -> model_config_pb2.ModelConfig:
        """The Triton configuration of an installed copy."""
        config = model_config_pb2.ModelConfig(
            name=triton_name, backend="python", max_batch_size=max_batch_size
        )
        config.input.append(
            model_config_pb2.ModelInput(
                name=self.spec.input.tensor, data_type=model_config_pb2.TYPE_STRING, dims=[1]
            )
        )
        for out in self.outputs:
            config.output.append(
                model_config_pb2.ModelOutput(
                    name=out.name,
                    data_type=model_config_pb2.DataType.Value(out.data_type),
                    dims=list(out.dims),
                )
            )
        # One CPU instance: the machine's cores go to the model's own threads.
        config.instance_group.append(
            model_config_pb2.ModelInstanceGroup(
                kind=model_config_pb2.ModelInstanceGroup.KIND_CPU, count=1
            )
        )
        if self.dynamic_batching:
            config.dynamic_batching.max_queue_delay_microseconds = 2000
        for key, value in self.parameters.items():
            config.parameters[key].string_value = value
        return config


_IMAGE = InputSpec(tensor="IMAGE", kind="encoded")

CATALOG: dict[str, CatalogModel] = {
    model.name: model
    for model in (
        CatalogModel(
            name="digits-classifier",
            version="1",
            description=(
                "Handwritten digit (0-9) classifier: logistic regression trained on "
                "scikit-learn's bundled digits data, exported to ONNX, one "
                "classification per image."
            ),
            template="digits_classifier",
            spec=ModelSpec(
                input_type="image",
                input=_IMAGE,
                adapter=AdapterSpec(type="classification", outputs={"scores": "PROBABILITIES"}),
                labels=[str(d) for d in range(10)],
                confidence_threshold=0.0,
                max_batch_size=32,
                timeout_seconds=60.0,
            ),
            outputs=(TensorDecl("PROBABILITIES", "TYPE_FP32", (10,)),),
            dynamic_batching=True,
        ),
        CatalogModel(
            name="ocr-text",
            version="1",
            description=(
                "Text detection and recognition (PP-OCRv4 via rapidocr-onnxruntime): one "
                "text annotation per line with its quadrilateral, transcription and "
                "confidence."
            ),
            template="ocr_text",
            spec=ModelSpec(
                input_type="image",
                input=_IMAGE,
                adapter=AdapterSpec(
                    type="text",
                    outputs={"polygons": "POLYGONS", "texts": "TEXTS", "scores": "SCORES"},
                ),
                labels=["text"],
                confidence_threshold=0.5,
                max_batch_size=4,
                timeout_seconds=120.0,
            ),
            outputs=(
                TensorDecl("POLYGONS", "TYPE_FP32", (-1, 4, 2)),
                TensorDecl("TEXTS", "TYPE_STRING", (-1,)),
                TensorDecl("SCORES", "TYPE_FP32", (-1,)),
            ),
            parameters={"det_limit_side_len": "960"},
        ),
        CatalogModel(
            name="face-detector",
            version="1",
            description=(
                "Frontal face detector (OpenCV 4 Haar cascade): one box labelled 'face' "
                "per detected face."
            ),
            template="face_detector",
            spec=ModelSpec(
                input_type="image",
                input=_IMAGE,
                adapter=AdapterSpec(type="boxes", outputs={"boxes": "BOXES", "scores": "SCORES"}),
                labels=["face"],
                confidence_threshold=0.5,
                max_batch_size=8,
                timeout_seconds=60.0,
            ),
            outputs=(
                TensorDecl("BOXES", "TYPE_FP32", (-1, 4)),
                TensorDecl("SCORES", "TYPE_FP32", (-1,)),
            ),
            parameters={"scale_factor": "1.1", "min_neighbors": "5", "min_size": "30"},
        ),
    )
}
