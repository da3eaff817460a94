# syntax=docker/dockerfile:1
# prelabel predict worker: one replica of one model service (python -m
# model_serving_service.worker). Its own image, so the trigger-router never carries
# model-serving's code: the router's container/Kubernetes backends start this image with
# MODEL_SERVING_WORKER_SERVICE_ID / _REPLICA_ID and the MODEL_SERVING_* settings.
#   docker build -f deploy/images/worker.Dockerfile -t prelabel/model-serving-worker .
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_NATIVE_TLS=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv PIP_BREAK_SYSTEM_PACKAGES=1
RUN python -m pip install --no-cache-dir "uv>=0.13,<0.14"
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY services services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups --no-editable --package prelabel-model-serving

FROM ${BASE}
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin prelabel
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
# No HTTP port: a replica only consumes its predict queue; it drains on SIGTERM.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "model_serving_service.worker"]
