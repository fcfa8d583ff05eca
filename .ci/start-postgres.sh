#!/usr/bin/env bash
# Starts a throwaway PostgreSQL on 127.0.0.1 as the postgres user (it refuses to run as root) and prints its URL.
# Usage: [PG_DIR=dir] .ci/start-postgres.sh [port]   (installs Debian's postgresql when it is missing)
# Stop it with: su postgres -s /bin/sh -c "pg_ctl -D \$PG_DIR/data stop"
set -euo pipefail
PORT="${1:-$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")}"
if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
BIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)")"
DIR="${PG_DIR:-$(mktemp -d /tmp/auth-pg.XXXXXX)}"
mkdir -p "$DIR"
chown postgres "$DIR"
run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
run "$BIN/initdb -D $DIR/data -U postgres -A trust --no-sync >/dev/null"
run "$BIN/pg_ctl -D $DIR/data -l $DIR/log -w -o \"-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off -c max_connections=200\" start >/dev/null"
echo "postgres://postgres@127.0.0.1:$PORT/postgres"
