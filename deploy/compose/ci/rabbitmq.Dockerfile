# CI stand-in for rabbitmq:3.13-management where public images cannot be pulled:
# Debian's rabbitmq-server (3.10, quorum queues) with the management plugin.
ARG BASE=localhost/prelabel-base:bookworm
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends rabbitmq-server \
    && rm -rf /var/lib/apt/lists/* \
    && echo '[rabbitmq_management,rabbitmq_prometheus].' > /etc/rabbitmq/enabled_plugins
COPY deploy/compose/ci/rabbitmq-entrypoint.sh /usr/local/bin/rabbitmq-entrypoint
USER rabbitmq
ENV HOME=/var/lib/rabbitmq
EXPOSE 5672 15672
CMD ["sh", "/usr/local/bin/rabbitmq-entrypoint"]
