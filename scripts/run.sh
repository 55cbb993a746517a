#!/usr/bin/env bash
# run.sh: run Gatehouse on this machine in the foreground until Ctrl-C.
#
# Expects bin/management, bin/gateway and bin/demohub built (make run builds them; GATEHOUSE_BIN
# names another folder holding them). Uses, with these defaults:
#   DATABASE_URL            the URL scripts/postgres.sh prints (make run passes it in)
#   MANAGEMENT_ADMIN_TOKEN  dev-admin-token
#   MANAGEMENT_LISTEN       127.0.0.1:8080
#   MANAGEMENT_ADMIN_LISTEN 127.0.0.1:9090 (/metrics)
#   NATS_URL                empty: management starts an embedded NATS server
#   GATEHOUSE_DB            gatehouse: the database used when DATABASE_URL names "postgres"
#   GATEHOUSE_DATA          .data: the gateway nodes' cache folders go below it
# and the demo's DEMOHUB_LISTEN, GATEWAY_LISTEN_1/2 and GATEWAY_ADMIN_LISTEN_1/2 (docs/running.md).
# Waits until management's /healthz answers 200, prints where everything is, and stops every
# process it started when it exits, whether by Ctrl-C, a signal, or a child dying.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

need_cmd curl

BIN="${GATEHOUSE_BIN:-$ROOT/bin}"
MANAGEMENT_BIN="$BIN/management"
[ -x "$MANAGEMENT_BIN" ] || die "$MANAGEMENT_BIN not found: run 'make build' first, or 'make run'"

if [ -z "${DATABASE_URL:-}" ]; then
	DATABASE_URL="$("$ROOT/scripts/postgres.sh")"
fi
# When the URL names the server's default database ("postgres"), management keeps its data in
# a database of its own instead (GATEHOUSE_DB, default gatehouse), created when missing.
GATEHOUSE_DB="${GATEHOUSE_DB:-gatehouse}"
if printf '%s' "$DATABASE_URL" | grep -Eq '^[a-z]+://[^/]*/postgres([?]|$)'; then
	command -v psql >/dev/null 2>&1 || apt_install postgresql-client
	if [ "$(PGCONNECT_TIMEOUT=5 psql "$DATABASE_URL" -qtAc "SELECT 1 FROM pg_database WHERE datname = '$GATEHOUSE_DB'")" != 1 ]; then
		PGCONNECT_TIMEOUT=5 psql "$DATABASE_URL" -qc "CREATE DATABASE \"$GATEHOUSE_DB\"" >/dev/null
		log "created database $GATEHOUSE_DB"
	fi
	DATABASE_URL="$(printf '%s' "$DATABASE_URL" | sed -E "s#^([a-z]+://[^/]*)/postgres#\1/$GATEHOUSE_DB#")"
fi
export DATABASE_URL
export MANAGEMENT_ADMIN_TOKEN="${MANAGEMENT_ADMIN_TOKEN:-dev-admin-token}"
export MANAGEMENT_LISTEN="${MANAGEMENT_LISTEN:-127.0.0.1:8080}"
export MANAGEMENT_ADMIN_LISTEN="${MANAGEMENT_ADMIN_LISTEN:-127.0.0.1:9090}"
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

# The demo: a Web PubSub-style hub (bin/demohub) that checks an access_token, a service with a
# WebSocket API in front of it, a product, an active subscription, a gateway resource linked to
# the API, and two gateway nodes holding a token for it. Seeding is idempotent (PUT).
DEMO_SERVICE_PATH="/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/demo/providers/Microsoft.ApiManagement/service/gatehouse"
DEMOHUB_LISTEN="${DEMOHUB_LISTEN:-127.0.0.1:9000}"
DEMOHUB_ACCESS_TOKEN="${DEMOHUB_ACCESS_TOKEN:-demo-access-token}"
GATEWAY_LISTENS=("${GATEWAY_LISTEN_1:-127.0.0.1:8081}" "${GATEWAY_LISTEN_2:-127.0.0.1:8082}")
GATEWAY_ADMIN_LISTENS=("${GATEWAY_ADMIN_LISTEN_1:-127.0.0.1:9091}" "${GATEWAY_ADMIN_LISTEN_2:-127.0.0.1:9092}")
DEMO_KEY=""
DEMO_CONSUMER_TOKEN=""

# arm METHOD PATH [BODY]: one management call on the demo service (arm_request, lib.sh).
arm() { arm_request "$MANAGEMENT_BASE" "$MANAGEMENT_ADMIN_TOKEN" "$1" "$DEMO_SERVICE_PATH$2" "${3:-}"; }

seed_demo() {
	log "seeding the demo service"
	arm PUT "" '{"location":"local","sku":{"name":"Developer","capacity":1},"properties":{"publisherEmail":"admin@example.com","publisherName":"Demo"}}' >/dev/null
	arm PUT /apis/chat "{\"properties\":{\"displayName\":\"Chat hub\",\"type\":\"websocket\",\"path\":\"chat\",\"protocols\":[\"ws\",\"wss\"],\"serviceUrl\":\"ws://$DEMOHUB_LISTEN/client/hubs/chat\"}}" >/dev/null
	arm PUT /products/starter '{"properties":{"displayName":"Starter","state":"published","subscriptionRequired":true}}' >/dev/null
	arm PUT /products/starter/apis/chat >/dev/null
	arm PUT /users/demo '{"properties":{"email":"dev@example.com","firstName":"Demo","lastName":"Developer"}}' >/dev/null
	arm PUT /subscriptions/demo '{"properties":{"displayName":"Demo subscription","scope":"/products/starter","ownerId":"/users/demo","state":"active"}}' >/dev/null
	DEMO_KEY="$(arm POST /subscriptions/demo/listSecrets | json_field primaryKey)"
	arm PUT /gateways/local '{"properties":{"locationData":{"name":"local"},"description":"make run"}}' >/dev/null
	arm PUT /gateways/local/apis/chat >/dev/null
}

start_edge() {
	log "starting the demo hub on $DEMOHUB_LISTEN"
	DEMOHUB_LISTEN="$DEMOHUB_LISTEN" DEMOHUB_ACCESS_TOKEN="$DEMOHUB_ACCESS_TOKEN" "$BIN/demohub" &
	CHILDREN+=("$!")
	seed_demo
	local expiry token i
	expiry="$(date -u -d '+29 days' +%Y-%m-%dT%H:%M:%SZ)"
	DEMO_CONSUMER_TOKEN="$(arm POST /users/demo/token "{\"properties\":{\"keyType\":\"primary\",\"expiry\":\"$expiry\"}}" | json_field value)"
	token="$(arm POST /gateways/local/generateToken "{\"keyType\":\"primary\",\"expiry\":\"$expiry\"}" | json_field value)"
	[ -n "$token" ] || die "generateToken returned no token"
	for i in 0 1; do
		log "starting gateway node $((i + 1)) on ${GATEWAY_LISTENS[i]}"
		GATEWAY_TOKEN="$token" MANAGEMENT_URL="$MANAGEMENT_BASE" GATEWAY_LISTEN="${GATEWAY_LISTENS[i]}" \
			GATEWAY_ADMIN_LISTEN="${GATEWAY_ADMIN_LISTENS[i]}" GATEWAY_CACHE_DIR="${GATEHOUSE_DATA:-$ROOT/.data}/gateway-$((i + 1))" \
			"$BIN/gateway" &
		CHILDREN+=("$!")
	done
	for i in 0 1; do
		local deadline=$((SECONDS + HEALTH_TIMEOUT))
		until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://${GATEWAY_ADMIN_LISTENS[i]}/readyz" || true)" = 200 ]; do
			[ "$SECONDS" -lt "$deadline" ] || die "gateway node $((i + 1)) did not become ready"
			sleep 0.3
		done
	done
}

# redacted prints URL $1 with any password replaced by ***.
redacted() {
	sed -E 's#(://[^:/@]+):[^@/]*@#\1:***@#' <<<"$1"
}

print_ready() {
	local base="$1" nats="${NATS_URL:-embedded (started by management)}"
	local service="$base$DEMO_SERVICE_PATH"
	local auth="Authorization: Bearer $MANAGEMENT_ADMIN_TOKEN"
	cat <<READY

Gatehouse is ready.
  management  $base   (admin token: $MANAGEMENT_ADMIN_TOKEN)
  database    $(redacted "$DATABASE_URL")
  NATS        $nats

  gateways    ws://${GATEWAY_LISTENS[0]}  ws://${GATEWAY_LISTENS[1]}
  demo hub    ws://$DEMOHUB_LISTEN/client/hubs/chat (access_token $DEMOHUB_ACCESS_TOKEN)

Connect through a gateway node (type lines to send; "broadcast:..." goes to every client):
  bin/wscat 'ws://${GATEWAY_LISTENS[0]}/chat?subscription-key=$DEMO_KEY&access_token=$DEMOHUB_ACCESS_TOKEN'

The portal, with the test console (sign in with the admin token, or as the demo developer with
the consumer token below):
  $base/portal/
  consumer token: $DEMO_CONSUMER_TOKEN

List the demo service's APIs:
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
	MANAGEMENT_BASE="$base"
	start_edge
	print_ready "$base"

	# Stay in the foreground until a child exits (or Ctrl-C runs the traps).
	local status=0
	wait -n "${CHILDREN[@]}" || status=$?
	log "a child process exited with status $status; stopping the rest"
	exit "$status"
}

main "$@"
