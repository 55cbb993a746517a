#!/usr/bin/env bash
# bench-management.sh: measure management's GET and PUT of APIs against a real Postgres.
# Starts bin/management (embedded NATS, its own fresh database) on a free port, seeds a service
# with 100 WebSocket APIs, and runs cmd/mgmtload for GET then PUT: requests/s and p50/p99.
# DATABASE_URL names the server (make bench-management passes one in). GET runs with WORKERS
# (16) concurrent clients; PUT with each of PUT_WORKERS ("2 8"): writes to one service serialize
# on its configuration revision, so PUT latency grows with concurrent writers to one service.
# DURATION (10s) is per run. Results are printed; docs/performance.md records them.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

: "${DATABASE_URL:?DATABASE_URL is required (make bench-management sets it)}"
WORKERS="${WORKERS:-16}"
PUT_WORKERS="${PUT_WORKERS:-2 8}"
DURATION="${DURATION:-10s}"

go build -trimpath -o bin/management ./services/management/cmd/management
go build -trimpath -o bin/mgmtload ./services/management/cmd/mgmtload

db="gatehouse_bench_$$"
admin_url="$DATABASE_URL"
bench_url="$(printf '%s' "$admin_url" | sed -E "s#/[^/?]*(\?|$)#/$db\1#")"
psql_cmd() { PGCONNECT_TIMEOUT=5 psql "$admin_url" -v ON_ERROR_STOP=1 -qtAc "$1"; }
command -v psql >/dev/null || die "psql is required (Debian package postgresql-client)"
psql_cmd "CREATE DATABASE $db"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 18089)"
DATABASE_URL="$bench_url" MANAGEMENT_ADMIN_TOKEN=bench-token MANAGEMENT_LISTEN="127.0.0.1:$port" \
	MANAGEMENT_ADMIN_LISTEN=127.0.0.1:0 NATS_EMBEDDED_LISTEN=127.0.0.1:0 LOG_LEVEL=warn bin/management &
pid=$!
cleanup() {
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	psql_cmd "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
}
trap cleanup EXIT

for _ in $(seq 1 100); do
	curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
	sleep 0.2
done

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
bin/mgmtload -url "http://127.0.0.1:$port" -token bench-token -mode get -workers "$WORKERS" -duration "$DURATION"
for w in $PUT_WORKERS; do
	bin/mgmtload -url "http://127.0.0.1:$port" -token bench-token -mode put -workers "$w" -duration "$DURATION"
done
