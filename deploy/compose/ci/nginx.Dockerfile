# CI stand-in for nginx:1.27: Debian's nginx rendering /etc/nginx/templates/*.template
# with envsubst as the official image does (only names matching NGINX_ENVSUBST_FILTER).
ARG BASE=localhost/prelabel-base:bookworm
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends nginx-light gettext-base curl \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default
COPY deploy/compose/ci/nginx-entrypoint.sh /usr/local/bin/nginx-entrypoint
CMD ["sh", "/usr/local/bin/nginx-entrypoint"]
