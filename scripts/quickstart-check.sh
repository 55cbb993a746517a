#!/usr/bin/env bash
# quickstart-check.sh: run the README's quickstart block against a fresh `make run`, so that the
# quickstart cannot rot. deployments/quickstart_test.go runs it as part of `go test work`.
#
# It builds the binaries into a temporary folder (or uses GATEHOUSE_BIN), starts scripts/run.sh
# on free ports with a database of its own (created and dropped here), waits until run.sh says
# it is ready, then extracts the ```sh block that follows the "<!-- quickstart" marker in
# README.md, points its default addresses (127.0.0.1:8080, :8081, :9000) and bin/ at what it
# started, and runs it with bash -euo pipefail. It fails unless every command succeeds and the
# last one received the hub's echo over a WebSocket through a gateway node.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

need_cmd curl

WORK="$(mktemp -d)"
RUN_PID=""
DB_URL=""
DB_NAME="gatehouse_quickstart_$$"

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	local status=$?
	if [ -n "$RUN_PID" ] && kill -0 "$RUN_PID" 2>/dev/null; then
		kill -TERM "$RUN_PID" 2>/dev/null || true
		wait "$RUN_PID" 2>/dev/null || true
	fi
	if [ "$status" != 0 ] && [ -f "$WORK/run.log" ]; then
		log "scripts/run.sh said:"
		tail -n 40 "$WORK/run.log" >&2
	fi
	if [ -n "$DB_URL" ]; then
		PGCONNECT_TIMEOUT=5 psql "$DB_URL" -qc "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" >/dev/null 2>&1 || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

# free_port prints a TCP port on 127.0.0.1 that nothing listens on and that no earlier call
# printed. It picks below the kernel's ephemeral range (ip_local_port_range, 32768 and up by
# default), where the listeners other tests open on port 0 and outgoing connections land, so that
# a port found free here is not taken by them before run.sh binds it.
USED_PORTS=" "
free_port() {
	local p
	while :; do
		p=$((15000 + RANDOM % 17000))
		case "$USED_PORTS" in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			USED_PORTS+="$p "
			echo "$p"
			return
		fi
	done
}

BIN="${GATEHOUSE_BIN:-}"
if [ -z "$BIN" ]; then
	BIN="$WORK/bin"
	log "building the binaries into $BIN"
	(cd "$ROOT" && go build -o "$BIN/" ./services/management/cmd/management ./services/gateway/cmd/gateway \
		./services/gateway/cmd/demohub ./services/gateway/cmd/wscat)
fi

DB_URL="${DATABASE_URL:-$("$ROOT/scripts/postgres.sh")}"
if ! printf '%s' "$DB_URL" | grep -Eq '^[a-z]+://[^/]*/postgres([?]|$)'; then
	# run.sh uses a database of its own only when the URL names the server's "postgres".
	DB_URL="$(printf '%s' "$DB_URL" | sed -E 's#^([a-z]+://[^/?]*)/[^?]*#\1/postgres#')"
fi

MGMT="127.0.0.1:$(free_port)"
GW1="127.0.0.1:$(free_port)"
HUB="127.0.0.1:$(free_port)"
log "management $MGMT, gateway node 1 $GW1, demo hub $HUB, database $DB_NAME"
(
	cd "$ROOT"
	exec env DATABASE_URL="$DB_URL" GATEHOUSE_DB="$DB_NAME" GATEHOUSE_BIN="$BIN" GATEHOUSE_DATA="$WORK/data" \
		MANAGEMENT_LISTEN="$MGMT" MANAGEMENT_ADMIN_LISTEN="127.0.0.1:$(free_port)" NATS_URL= NATS_EMBEDDED_LISTEN="127.0.0.1:$(free_port)" \
		NATS_STORE_DIR="$WORK/nats" DEMOHUB_LISTEN="$HUB" \
		GATEWAY_LISTEN_1="$GW1" GATEWAY_LISTEN_2="127.0.0.1:$(free_port)" \
		GATEWAY_ADMIN_LISTEN_1="127.0.0.1:$(free_port)" GATEWAY_ADMIN_LISTEN_2="127.0.0.1:$(free_port)" \
		MANAGEMENT_ADMIN_TOKEN=dev-admin-token DEMOHUB_ACCESS_TOKEN=demo-access-token \
		scripts/run.sh
) >"$WORK/run.log" 2>&1 &
RUN_PID=$!

deadline=$((SECONDS + 90))
until grep -q '^Gatehouse is ready' "$WORK/run.log"; do
	kill -0 "$RUN_PID" 2>/dev/null || die "scripts/run.sh exited before it was ready"
	[ "$SECONDS" -lt "$deadline" ] || die "scripts/run.sh was not ready within 90s"
	sleep 0.3
done

# The block: the first ```sh fence after the marker, up to its closing fence.
awk '/^<!-- quickstart/ { marked = 1; next }
	marked && /^```sh$/ { inside = 1; next }
	inside && /^```$/ { exit }
	inside { print }' "$ROOT/README.md" >"$WORK/quickstart.sh"
[ -s "$WORK/quickstart.sh" ] || die "README.md has no \`\`\`sh block after a <!-- quickstart marker"
sed -i -e "s#127\.0\.0\.1:8080#$MGMT#g" -e "s#127\.0\.0\.1:8081#$GW1#g" -e "s#127\.0\.0\.1:9000#$HUB#g" \
	-e "s#^bin/#$BIN/#" -e "s#\([ '\"]\)bin/#\1$BIN/#g" "$WORK/quickstart.sh"

log "running the README's quickstart ($(wc -l <"$WORK/quickstart.sh") lines)"
if ! (cd "$ROOT" && bash -euo pipefail "$WORK/quickstart.sh") >"$WORK/out" 2>&1; then
	cat "$WORK/out" >&2
	die "the quickstart failed"
fi
if ! grep -q '^connected: 101' "$WORK/out" || ! grep -q '^< ' "$WORK/out"; then
	cat "$WORK/out" >&2
	die "the quickstart did not end in a WebSocket echo through the gateway"
fi
log "the quickstart works: $(grep '^< ' "$WORK/out" | tail -n 1)"
