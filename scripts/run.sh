#!/usr/bin/env bash
# run.sh: run Gatehouse on this machine in the foreground until Ctrl-C.
#
# Expects bin/management built (make run builds it). Uses, with these defaults:
#   DATABASE_URL            the URL scripts/postgres.sh prints (make run passes it in)
#   MANAGEMENT_ADMIN_TOKEN  dev-admin-token
#   MANAGEMENT_LISTEN       127.0.0.1:8080
#   NATS_URL                empty: management starts an embedded NATS server
# Waits until management's /healthz answers 200, prints where everything is, and stops every
# process it started when it exits, whether by Ctrl-C, a signal, or a child dying.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

need_cmd curl

MANAGEMENT_BIN="$ROOT/bin/management"
[ -x "$MANAGEMENT_BIN" ] || die "$MANAGEMENT_BIN not found: run 'make build' first, or 'make run'"

if [ -z "${DATABASE_URL:-}" ]; then
	DATABASE_URL="$("$ROOT/scripts/postgres.sh")"
fi
export DATABASE_URL
export MANAGEMENT_ADMIN_TOKEN="${MANAGEMENT_ADMIN_TOKEN:-dev-admin-token}"
export MANAGEMENT_LISTEN="${MANAGEMENT_LISTEN:-127.0.0.1:8080}"
export NATS_URL="${NATS_URL:-}"

HEALTH_TIMEOUT="${GATEHOUSE_HEALTH_TIMEOUT:-60}" # seconds to wait for /healthz

CHILDREN=() # pids of every process started here, in start order
MANAGEMENT_PID=""

# stop_children sends SIGTERM to every child, newest first, gives them 15 seconds to finish
# (management drains and closes its embedded NATS), then kills whatever is left.
# shellcheck disable=SC2317 # run by the EXIT trap
stop_children() {
	trap - EXIT INT TERM
	local i pid deadline
	for ((i = ${#CHILDREN[@]} - 1; i >= 0; i--)); do
		kill -TERM "${CHILDREN[i]}" 2>/dev/null || true
	done
	deadline=$((SECONDS + 15))
	for pid in "${CHILDREN[@]}"; do
		while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
			sleep 0.2
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "pid $pid did not stop in time; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
}
trap stop_children EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# local_url turns a listen address (host:port, :port, 0.0.0.0:port, [::]:port) into a base URL
# that reaches it from this machine.
local_url() {
	local addr="$1" host port scheme=http
	port="${addr##*:}"
	host="${addr%:*}"
	case "$host" in "" | 0.0.0.0 | "[::]" | "::") host=127.0.0.1 ;; esac
	if [ -n "${MANAGEMENT_TLS_CERT:-}" ]; then scheme=https; fi
	echo "$scheme://$host:$port"
}

# start_management starts the management service in the background.
start_management() {
	log "starting management on $MANAGEMENT_LISTEN"
	"$MANAGEMENT_BIN" &
	MANAGEMENT_PID=$!
	CHILDREN+=("$MANAGEMENT_PID")
}

# wait_healthy polls $1/healthz until it answers 200, failing if management exits first or
# HEALTH_TIMEOUT seconds pass.
wait_healthy() {
	local url="$1/healthz" code deadline=$((SECONDS + HEALTH_TIMEOUT))
	while :; do
		if ! kill -0 "$MANAGEMENT_PID" 2>/dev/null; then
			local status=0
			wait "$MANAGEMENT_PID" || status=$?
			die "management exited with status $status before $url answered"
		fi
		code="$(curl -k -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)"
		[ "$code" = 200 ] && return 0
		if [ "$SECONDS" -ge "$deadline" ]; then
			die "$url did not answer 200 within ${HEALTH_TIMEOUT}s (last answer: ${code:-none})"
		fi
		sleep 0.5
	done
}

# start_edge is where gateway nodes (bin/gateway, each with a token from the management API's
# generateToken) and the demo WebSocket backend get started and added to CHILDREN. Neither
# exists yet, so this starts nothing and the ready block lists management alone.
start_edge() {
	:
}

# redacted prints URL $1 with any password replaced by ***.
redacted() {
	sed -E 's#(://[^:/@]+):[^@/]*@#\1:***@#' <<<"$1"
}

print_ready() {
	local base="$1" nats="${NATS_URL:-embedded (started by management)}"
	local service="$base/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/demo/providers/Microsoft.ApiManagement/service/gatehouse"
	local auth="Authorization: Bearer $MANAGEMENT_ADMIN_TOKEN"
	cat <<READY

Gatehouse is ready.
  management  $base   (admin token: $MANAGEMENT_ADMIN_TOKEN)
  database    $(redacted "$DATABASE_URL")
  NATS        $nats

Create a service, then list its APIs:
  curl -s -X PUT -H '$auth' -H 'Content-Type: application/json' \\
    '$service?api-version=2024-05-01' \\
    -d '{"location":"local","sku":{"name":"Developer","capacity":1},"properties":{"publisherEmail":"admin@example.com","publisherName":"Demo"}}'
  curl -s -H '$auth' '$service/apis?api-version=2024-05-01'

Ctrl-C stops everything.
READY
}

main() {
	local base
	base="$(local_url "$MANAGEMENT_LISTEN")"
	if curl -k -s -o /dev/null --max-time 2 "$base/healthz"; then
		die "something already answers on $MANAGEMENT_LISTEN (another make run?); stop it or set MANAGEMENT_LISTEN"
	fi
	start_management
	wait_healthy "$base"
	start_edge
	print_ready "$base"

	# Stay in the foreground until a child exits (or Ctrl-C runs the traps).
	local status=0
	wait -n "${CHILDREN[@]}" || status=$?
	log "a child process exited with status $status; stopping the rest"
	exit "$status"
}

main "$@"
