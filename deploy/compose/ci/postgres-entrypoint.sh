set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s' "${POSTGRES_PASSWORD:?}" > /tmp/pwfile
  # The socket inside the container is trusted (this script); TCP needs the password.
  initdb -D "$PGDATA" -U "${POSTGRES_USER:-postgres}" --pwfile=/tmp/pwfile --auth-local=trust --auth-host=scram-sha-256
  rm /tmp/pwfile
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
  createdb -h /var/run/postgresql -U "${POSTGRES_USER:-postgres}" "${POSTGRES_DB:-postgres}" || true
  pg_ctl -D "$PGDATA" -m fast -w stop
fi
exec postgres -D "$PGDATA"
