# syntax=docker/dockerfile:1
# Triton Inference Server on GPU: NGC's image plus the Python packages the catalog
# models import, same model repository layout and user as triton-cpu.Dockerfile.
# Written for GPU hosts; not built in CI here (NGC images cannot be pulled there).
#   docker build -f deploy/images/triton-gpu.Dockerfile -t prelabel/triton-gpu .
ARG BASE=nvcr.io/nvidia/tritonserver:24.10-py3
FROM ${BASE}
# NGC's image runs Python 3.10 for the Python backend; the catalog's packages are
# installed into that interpreter (OpenCV headless: no libGL needed).
# rapidocr-onnxruntime names opencv-python, which would install a second cv2 over the
# headless one: it goes in without dependencies, its own listed beside it.
RUN python3 -m pip install --no-cache-dir "numpy<2" "pillow>=10" "opencv-python-headless>=4.8,<5" \
      "onnxruntime>=1.17" "scikit-learn>=1.4" "skl2onnx>=1.16" pyclipper shapely six pyyaml \
    && python3 -m pip install --no-cache-dir --no-deps "rapidocr-onnxruntime>=1.4.4"
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin prelabel \
    && install -d -o 10001 -g 10001 /var/lib/prelabel /var/lib/prelabel/models
COPY deploy/images/healthcheck.py /usr/local/bin/prelabel-healthcheck
ENV HOME=/var/lib/prelabel PRELABEL_CATALOG_CACHE=/var/lib/prelabel/cache
USER 10001:10001
VOLUME /var/lib/prelabel
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=10 \
    CMD ["python3", "/usr/local/bin/prelabel-healthcheck", "http://127.0.0.1:8000/v2/health/ready"]
# The server is the entrypoint, as in triton-cpu: compose's `command:` and Kubernetes'
# `args:` pass only flags, so either image fits the same manifests.
ENTRYPOINT ["tritonserver"]
CMD ["--model-repository=/var/lib/prelabel/models", "--model-control-mode=explicit", \
     "--strict-readiness=false", "--http-port=8000", "--grpc-port=8001", "--metrics-port=8002"]
