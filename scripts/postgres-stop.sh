#!/usr/bin/env bash
# postgres-stop.sh: stop the private Postgres cluster that scripts/postgres.sh started in
# $GATEHOUSE_PG_DATA (default .data/postgres). Leaves its data in place, and never touches a
# server it did not start. Stopping a stopped cluster is not an error.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

DATA="${GATEHOUSE_PG_DATA:-$ROOT/.data/postgres}"

if [ ! -f "$DATA/PG_VERSION" ]; then
	log "no Postgres cluster in $DATA"
	exit 0
fi

version="$(cat "$DATA/PG_VERSION")"
pg_ctl="/usr/lib/postgresql/$version/bin/pg_ctl"
[ -x "$pg_ctl" ] || pg_ctl="$(command -v pg_ctl || true)"
[ -n "$pg_ctl" ] || die "pg_ctl for Postgres $version not found"

if ! as_pg "$pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
	log "Postgres cluster in $DATA is not running"
	exit 0
fi
as_pg "$pg_ctl" -D "$DATA" -m fast -w -t 60 stop >&2
log "stopped Postgres cluster in $DATA"
