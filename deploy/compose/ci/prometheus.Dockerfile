# CI stand-in for prom/prometheus: Debian's prometheus server and promtool.
ARG BASE=localhost/prelabel-base:bookworm
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* && install -d -o prometheus -g prometheus /prometheus
COPY deploy/images/healthcheck.py /usr/local/bin/prelabel-healthcheck
USER prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
