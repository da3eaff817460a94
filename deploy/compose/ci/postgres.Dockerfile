# CI stand-in for postgres:16: Debian's PostgreSQL 15, initialised from the official
# image's POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB on first start.
ARG BASE=localhost/prelabel-base:bookworm
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o postgres -g postgres /var/lib/postgresql/data /var/run/postgresql
COPY deploy/compose/ci/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
USER postgres
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
EXPOSE 5432
CMD ["sh", "/usr/local/bin/postgres-entrypoint"]
