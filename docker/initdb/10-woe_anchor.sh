#!/bin/sh
# First start only (the image's entrypoint runs this): pg_cron where its jobs live, woe_anchor
# there, and woe_anchor with dblink (scheduling from another database) in POSTGRES_DB.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_cron;
CREATE EXTENSION IF NOT EXISTS woe_anchor CASCADE;
SQL
if [ "${POSTGRES_DB:-postgres}" != postgres ]; then
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE EXTENSION IF NOT EXISTS woe_anchor CASCADE;
CREATE EXTENSION IF NOT EXISTS dblink;
SQL
fi
