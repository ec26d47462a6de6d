#!/bin/bash
# Entrypoint of the local PostgreSQL stand-in (postgres.Dockerfile). Same contract as the
# official image's, for what docker/compose.yml uses:
#   POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE   the superuser's password (required)
#   POSTGRES_USER (default postgres), POSTGRES_DB (default: POSTGRES_USER)
#   /docker-entrypoint-initdb.d/*.sql and *.sh     run once, when the data folder is new
# Clients on the network log in with that password (scram-sha-256); inside the container
# the unix socket trusts local users (pg_isready, the init scripts).
set -euo pipefail
# (A variable only so that tests/test_docker_files.py can run this script outside a container.)
initdb_dir=${POSTGRES_INITDB_DIR:-/docker-entrypoint-initdb.d}

if [ "${1:-}" != postgres ]; then
  exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
  # A fresh named volume is root's: hand it, and the socket folder, to postgres.
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    if [ ! -r "$POSTGRES_PASSWORD_FILE" ]; then
      echo "postgres-entrypoint: POSTGRES_PASSWORD_FILE=$POSTGRES_PASSWORD_FILE is missing or unreadable" >&2
      exit 1
    fi
    POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
  fi
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgres-entrypoint: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (the superuser's password)" >&2
    exit 1
  fi
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  echo "postgres-entrypoint: initialising $PGDATA (superuser $user, database $db)"
  initdb --pgdata="$PGDATA" --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  # A server on the unix socket only while the database and init scripts are set up.
  pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait --silent start
  psql=(psql --no-psqlrc --quiet --set ON_ERROR_STOP=1 --username="$user")
  if [ "$db" != postgres ]; then
    "${psql[@]}" --dbname=postgres --set db="$db" <<<'CREATE DATABASE :"db";'
  fi
  for script in "$initdb_dir"/*; do
    case $script in
      *.sql) echo "postgres-entrypoint: running $script"; "${psql[@]}" --dbname="$db" --file="$script" ;;
      *.sh)  echo "postgres-entrypoint: running $script"; bash "$script" ;;
      *)     if [ -e "$script" ]; then echo "postgres-entrypoint: ignoring $script (neither .sql nor .sh)"; fi ;;
    esac
  done
  pg_ctl --pgdata="$PGDATA" --mode=fast --wait --silent stop
  unset POSTGRES_PASSWORD
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' "${@:2}"
