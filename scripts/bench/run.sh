#!/usr/bin/env bash
# run.sh: the WebSocket benchmark (make bench; docs/performance.md, issue 7).
#
# On this one machine it starts a fixed echo backend (bin/benchecho) and then, in turn, each
# target in front of it: the backend direct, a Gatehouse gateway (management with embedded NATS
# and a fresh Postgres database; the API checks a subscription key and validate-jwt on the
# handshake), nginx and HAProxy (Debian packages, installed when missing; configured by
# scripts/bench/nginx.conf and haproxy.cfg). The load generator (bin/wsload) is its own
# process. Every proxy is started fresh for each scenario and stopped after it:
#   (a) 1,000 connections echoing 256-byte messages as fast as they go: messages/s, p50/p99 RTT
#   (b) handshake storm, 16 workers: upgrades/s (each fully checked by the gateway)
#   (c) 8,000 idle connections: RSS delta per connection of the proxy, workers included
#   (d) 1 MiB messages over 8 connections: MB/s
#   (e) 5 gateway nodes: a write's 2xx → enforced on every node, p50/p99
# Each scenario runs BENCH_RUNS times (3); the report quotes medians, each with its ratio to
# nginx and to direct (the median of the ratios within each run, where the targets ran back to
# back), and is printed and written to bench-results/<timestamp>.md.
#
# Settings: DATABASE_URL (make bench passes one in), BENCH_RUNS (3), BENCH_QUICK=1 (short
# runs and fewer connections: checks the suite end to end in a few minutes; one run unless
# BENCH_RUNS is set), BENCH_TARGETS ("direct gatehouse nginx haproxy"; also proto-gnet: the gnet v2
# prototype cmd/relayproto of issue 16, not in (b) since its handshake checks nothing), BENCH_SCENARIOS
# ("a b c d e"), BENCH_GATEWAY_ENV (extra VAR=value words for the gateway, e.g. "GOGC=200"),
# GATEWAY_BIN (a gateway binary to measure instead of building bin/gateway: compare builds),
# BENCH_PPROF_DIR (if set, the gateway's CPU profile of (a) and (b) and heap profile of (c)
# are saved there). The scenario parameters can be set one by one for experiments: A_CONNS,
# A_WARMUP, A_DURATION, B_WORKERS, B_WARMUP, B_DURATION, C_CONNS, C_SETTLE, D_CONNS, D_WARMUP,
# D_DURATION, E_NODES, E_WRITES. Logs stay in a temporary folder, printed at the end.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$ROOT"

: "${DATABASE_URL:?DATABASE_URL is required (make bench sets it)}"
BENCH_QUICK="${BENCH_QUICK:-0}"
if [ "$BENCH_QUICK" = 1 ]; then
	BENCH_RUNS="${BENCH_RUNS:-1}"
	: "${A_CONNS:=200}" "${A_WARMUP:=1s}" "${A_DURATION:=3s}"
	: "${B_WARMUP:=1s}" "${B_DURATION:=3s}"
	: "${C_CONNS:=500}" "${C_SETTLE:=1s}"
	: "${D_CONNS:=4}" "${D_WARMUP:=1s}" "${D_DURATION:=3s}"
	: "${E_WRITES:=6}"
else
	BENCH_RUNS="${BENCH_RUNS:-3}"
	: "${A_CONNS:=1000}" "${A_WARMUP:=3s}" "${A_DURATION:=15s}"
	: "${B_WARMUP:=2s}" "${B_DURATION:=10s}"
	: "${C_CONNS:=8000}" "${C_SETTLE:=5s}"
	: "${D_CONNS:=8}" "${D_WARMUP:=2s}" "${D_DURATION:=10s}"
	: "${E_WRITES:=40}"
fi
: "${B_WORKERS:=16}" "${E_NODES:=5}"
BENCH_TARGETS="${BENCH_TARGETS:-direct gatehouse nginx haproxy}"
BENCH_SCENARIOS="${BENCH_SCENARIOS:-a b c d e}"
BENCH_GATEWAY_ENV="${BENCH_GATEWAY_ENV:-}"
BENCH_PPROF_DIR="${BENCH_PPROF_DIR:-}"
GATEWAY_BIN="${GATEWAY_BIN:-}"
[ -z "$BENCH_PPROF_DIR" ] || mkdir -p "$BENCH_PPROF_DIR"

# Each proxied connection takes two descriptors in the proxy: raise the limit as far as allowed,
# and hold fewer idle connections in (c) if even that is too low. The proxies' own limits follow.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE="$(ulimit -n)"
[ "$NOFILE" != unlimited ] || NOFILE=1048576
log "open files limit: $NOFILE"
if [ "$NOFILE" -lt $((2 * C_CONNS + 1000)) ]; then
	C_CONNS=$(((NOFILE - 1000) / 2))
	[ "$C_CONNS" -ge 100 ] || die "ulimit -n $NOFILE is too low for the idle scenario"
	log "holding $C_CONNS idle connections in (c): the most this limit allows"
fi
PROXY_NOFILE=$((NOFILE < 65536 ? NOFILE : 65536)) # nginx sizes its connection tables by it
PROXY_MAXCONN=$(((PROXY_NOFILE - 1000) / 2))

need_cmd curl
need_cmd python3
command -v psql >/dev/null 2>&1 || apt_install postgresql-client
case " $BENCH_TARGETS " in *" nginx "*) need_cmd nginx ;; esac
case " $BENCH_TARGETS " in *" haproxy "*) need_cmd haproxy ;; esac

log "building"
go build -trimpath -o bin/management ./services/management/cmd/management
if [ -z "$GATEWAY_BIN" ]; then
	go build -trimpath -o bin/gateway ./services/gateway/cmd/gateway
	GATEWAY_BIN=bin/gateway
fi
[ -x "$GATEWAY_BIN" ] || die "GATEWAY_BIN $GATEWAY_BIN is not an executable"
go build -trimpath -o bin/benchecho ./services/gateway/cmd/benchecho
go build -trimpath -o bin/wsload ./services/gateway/cmd/wsload
case " $BENCH_TARGETS " in *" proto-gnet "*) go build -trimpath -o bin/relayproto ./services/gateway/cmd/relayproto ;; esac

work="$(mktemp -d -t gatehouse-bench-XXXXXX)"
samples="$work/samples.tsv"
: >"$samples"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Processes: start_bg NAME CMD... starts CMD with its output in $work/NAME.log and sets BG_PID;
# stop_pid PID stops one (TERM, then KILL after 10 s). Everything still running stops on exit.
BG=()
BG_PID=""
start_bg() {
	local name="$1"
	shift
	"$@" >>"$work/$name.log" 2>&1 &
	BG_PID=$!
	BG+=("$BG_PID")
}
stop_pid() {
	local pid="$1" deadline=$((SECONDS + 10))
	kill -TERM "$pid" 2>/dev/null || return 0
	while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
db=""
psql_cmd() { PGCONNECT_TIMEOUT=5 psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -qtAc "$1"; }
cleanup() {
	local i
	for ((i = ${#BG[@]} - 1; i >= 0; i--)); do stop_pid "${BG[i]}"; done
	[ -z "$db" ] || psql_cmd "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
}
trap cleanup EXIT

# wait_200 URL [SECONDS] waits until URL answers 200.
wait_200() {
	local deadline=$((SECONDS + ${2:-60}))
	until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true)" = 200 ]; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

# wait_port PORT waits until something accepts TCP connections on 127.0.0.1:PORT.
wait_port() {
	local deadline=$((SECONDS + 30))
	until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.05
	done
}

# --- the echo backend ---------------------------------------------------------------------
ECHO_PORT="$(free_port)"
start_bg benchecho bin/benchecho -listen "127.0.0.1:$ECHO_PORT"
wait_200 "http://127.0.0.1:$ECHO_PORT/healthz" || die "the echo backend did not start (log: $work/benchecho.log)"

# --- Gatehouse: management, seeded through the ARM API as scripts/run.sh does -----------------
ADMIN_TOKEN="bench-admin-token"
SERVICE="/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/bench/providers/Microsoft.ApiManagement/service/bench"
MGMT=""
JWT_KEY="$(head -c 32 /dev/urandom | base64 -w0)"
KEY=""
PROBE_KEY=""
GW_TOKEN=""

# arm METHOD PATH [BODY]: one management call on the benchmark service (arm_request, lib.sh).
arm() { arm_request "$MGMT" "$ADMIN_TOKEN" "$1" "$SERVICE$2" "${3:-}"; }

start_management() {
	db="gatehouse_bench_$$"
	psql_cmd "CREATE DATABASE $db"
	local url port
	url="$(printf '%s' "$DATABASE_URL" | sed -E "s#/[^/?]*(\?|$)#/$db\1#")"
	port="$(free_port)"
	MGMT="http://127.0.0.1:$port"
	start_bg management env DATABASE_URL="$url" MANAGEMENT_ADMIN_TOKEN="$ADMIN_TOKEN" MANAGEMENT_LISTEN="127.0.0.1:$port" \
		MANAGEMENT_ADMIN_LISTEN=127.0.0.1:0 NATS_EMBEDDED_LISTEN=127.0.0.1:0 LOG_LEVEL=warn bin/management
	wait_200 "$MGMT/readyz" || die "management did not become ready (log: $work/management.log)"

	log "seeding the benchmark service"
	local policy="<policies><inbound><base/><validate-jwt header-name='Authorization' require-scheme='Bearer'><issuer-signing-keys><key>{{jwt-key}}</key></issuer-signing-keys><audiences><audience>bench</audience></audiences></validate-jwt></inbound><backend><base/></backend><outbound><base/></outbound><on-error><base/></on-error></policies>"
	arm PUT "" '{"location":"local","sku":{"name":"Developer","capacity":1},"properties":{"publisherEmail":"bench@example.com","publisherName":"Bench"}}' >/dev/null
	arm PUT /namedValues/jwt-key "{\"properties\":{\"displayName\":\"jwt-key\",\"value\":\"$JWT_KEY\",\"secret\":true}}" >/dev/null
	arm PUT /apis/echo "{\"properties\":{\"displayName\":\"Echo\",\"type\":\"websocket\",\"path\":\"echo\",\"protocols\":[\"ws\"],\"serviceUrl\":\"ws://127.0.0.1:$ECHO_PORT/echo\"}}" >/dev/null
	arm PUT /apis/echo/operations/onHandshake/policies/policy "{\"properties\":{\"format\":\"xml\",\"value\":\"$policy\"}}" >/dev/null
	arm PUT /products/bench '{"properties":{"displayName":"Bench","state":"published","subscriptionRequired":true}}' >/dev/null
	arm PUT /products/bench/apis/echo >/dev/null
	arm PUT /subscriptions/bench '{"properties":{"displayName":"bench","scope":"/products/bench","state":"active"}}' >/dev/null
	arm PUT /subscriptions/probe '{"properties":{"displayName":"probe","scope":"/products/bench","state":"active"}}' >/dev/null
	KEY="$(arm POST /subscriptions/bench/listSecrets | json_field primaryKey)"
	PROBE_KEY="$(arm POST /subscriptions/probe/listSecrets | json_field primaryKey)"
	arm PUT /gateways/bench '{"properties":{"locationData":{"name":"bench"},"description":"make bench"}}' >/dev/null
	arm PUT /gateways/bench/apis/echo >/dev/null
	GW_TOKEN="$(arm POST /gateways/bench/generateToken "{\"keyType\":\"primary\",\"expiry\":\"$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)\"}" | json_field value)"
	[ -n "$KEY" ] && [ -n "$PROBE_KEY" ] && [ -n "$GW_TOKEN" ] || die "seeding did not yield keys and a gateway token"
}

# start_gateway NAME sets GW_PORT and GW_ADMIN_PORT and BG_PID of a new ready gateway node.
GW_PORT="" GW_ADMIN_PORT=""
start_gateway() {
	local name="$1"
	GW_PORT="$(free_port)"
	GW_ADMIN_PORT="$(free_port)"
	local pprof=false
	[ -z "$BENCH_PPROF_DIR" ] || pprof=true
	# shellcheck disable=SC2086 # BENCH_GATEWAY_ENV is a list of VAR=value words
	start_bg "$name" env GATEWAY_TOKEN="$GW_TOKEN" MANAGEMENT_URL="$MGMT" GATEWAY_LISTEN="127.0.0.1:$GW_PORT" \
		GATEWAY_ADMIN_LISTEN="127.0.0.1:$GW_ADMIN_PORT" GATEWAY_CACHE_DIR="$work/cache-$name" GATEWAY_PPROF="$pprof" \
		LOG_LEVEL=warn $BENCH_GATEWAY_ENV "$GATEWAY_BIN"
	wait_200 "http://127.0.0.1:$GW_ADMIN_PORT/readyz" || die "gateway $name did not become ready (log: $work/$name.log)"
}

# --- targets ----------------------------------------------------------------------------
# start_target TARGET starts TARGET fresh and sets TARGET_URL, TARGET_PID (the process whose
# memory counts, with its children) and PROXY_PID (to stop; empty for direct).
TARGET_URL="" TARGET_PID="" PROXY_PID=""
start_target() {
	local port
	case "$1" in
	direct)
		TARGET_URL="ws://127.0.0.1:$ECHO_PORT/echo" TARGET_PID="" PROXY_PID=""
		return
		;;
	gatehouse)
		start_gateway gateway
		TARGET_URL="ws://127.0.0.1:$GW_PORT/echo"
		;;
	nginx)
		port="$(free_port)"
		mkdir -p "$work/nginx"
		sed -e "s#@WORK@#$work/nginx#g; s#@LISTEN@#127.0.0.1:$port#; s#@BACKEND@#127.0.0.1:$ECHO_PORT#; s#@NOFILE@#$PROXY_NOFILE#g" \
			scripts/bench/nginx.conf >"$work/nginx/nginx.conf"
		start_bg nginx nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;'
		wait_port "$port" || die "nginx did not start (log: $work/nginx.log, $work/nginx/nginx-error.log)"
		TARGET_URL="ws://127.0.0.1:$port/echo"
		;;
	haproxy)
		port="$(free_port)"
		sed -e "s#@THREADS@#$(nproc)#; s#@LISTEN@#127.0.0.1:$port#; s#@BACKEND@#127.0.0.1:$ECHO_PORT#; s#@MAXCONN@#$PROXY_MAXCONN#g" \
			scripts/bench/haproxy.cfg >"$work/haproxy.cfg"
		start_bg haproxy haproxy -db -f "$work/haproxy.cfg"
		wait_port "$port" || die "haproxy did not start (log: $work/haproxy.log)"
		TARGET_URL="ws://127.0.0.1:$port/echo"
		;;
	proto-gnet) # the gnet v2 prototype (issue 16): no checks on the handshake, so (b) does not compare
		port="$(free_port)"
		start_bg relayproto bin/relayproto -listen "127.0.0.1:$port" -backend "127.0.0.1:$ECHO_PORT"
		wait_port "$port" || die "relayproto did not start (log: $work/relayproto.log)"
		TARGET_URL="ws://127.0.0.1:$port/echo"
		;;
	*) die "unknown target $1" ;;
	esac
	TARGET_PID="$BG_PID" PROXY_PID="$BG_PID"
}
stop_target() { [ -z "$PROXY_PID" ] || stop_pid "$PROXY_PID"; PROXY_PID=""; }

# --- measuring ----------------------------------------------------------------------------
# field NAME LINE prints the value of NAME=value in LINE.
field() { sed -nE "s/.*(^| )$1=([^ ]*).*/\2/p" <<<"$2"; }
# sample SCENARIO FIGURE LABEL TARGET RUN VALUE appends one sample.
sample() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$samples"; }

auth=(-header "Ocp-Apim-Subscription-Key: ${KEY:-none}" -jwt-key "$JWT_KEY")
wsload() {
	local out
	out="$(bin/wsload "$@" 2>>"$work/wsload.log")" || { tail -5 "$work/wsload.log" >&2; return 1; }
	echo "$out"
}

# pprof_during NAME SECONDS fetches a CPU profile of the gateway in the background, setting
# PPROF_PID; pprof_wait waits for it.
PPROF_PID=""
pprof_during() {
	PPROF_PID=""
	[ -n "$BENCH_PPROF_DIR" ] && [ "$TARGET" = gatehouse ] || return 0
	curl -s -o "$BENCH_PPROF_DIR/$1.cpu.pprof" "http://127.0.0.1:$GW_ADMIN_PORT/debug/pprof/profile?seconds=$2" &
	PPROF_PID=$!
}
pprof_wait() { [ -z "$PPROF_PID" ] || wait "$PPROF_PID" || true; }

secs() { sed -E 's/s$//' <<<"$1"; }

run_scenario() {
	local s="$1" run="$2" out
	TARGET="$3"
	case "$s" in
	a)
		start_target "$TARGET"
		pprof_during "a-run$run" "$(($(secs "$A_WARMUP") + $(secs "$A_DURATION") - 1))"
		out="$(wsload echo -url "$TARGET_URL" "${auth[@]}" -conns "$A_CONNS" -size 256 -warmup "$A_WARMUP" -duration "$A_DURATION" ${TARGET_PID:+-pid "$TARGET_PID"})"
		pprof_wait
		sample a msgs_per_s "(a) $A_CONNS conns × 256 B: messages/s" "$TARGET" "$run" "$(field msgs_per_s "$out")"
		sample a p50_ms "(a) p50 round trip, ms" "$TARGET" "$run" "$(field p50_ms "$out")"
		sample a p99_ms "(a) p99 round trip, ms" "$TARGET" "$run" "$(field p99_ms "$out")"
		[ -z "$TARGET_PID" ] || sample a cpu_us "(a) proxy CPU per round trip, µs" "$TARGET" "$run" "$(field cpu_us_per_op "$out")"
		;;
	b)
		[ "$TARGET" != proto-gnet ] || return 0 # its handshake checks nothing: not comparable
		start_target "$TARGET"
		pprof_during "b-run$run" "$(($(secs "$B_WARMUP") + $(secs "$B_DURATION") - 1))"
		out="$(wsload handshake -url "$TARGET_URL" "${auth[@]}" -workers "$B_WORKERS" -warmup "$B_WARMUP" -duration "$B_DURATION" ${TARGET_PID:+-pid "$TARGET_PID"})"
		pprof_wait
		sample b per_s "(b) handshakes/s, $B_WORKERS workers" "$TARGET" "$run" "$(field per_s "$out")"
		sample b p99_ms "(b) p99 handshake, ms" "$TARGET" "$run" "$(field p99_ms "$out")"
		[ -z "$TARGET_PID" ] || sample b cpu_us "(b) proxy CPU per handshake, µs" "$TARGET" "$run" "$(field cpu_us_per_op "$out")"
		;;
	c)
		[ "$TARGET" != direct ] || return 0 # memory of a proxy; direct has none
		start_target "$TARGET"
		out="$(wsload idle -url "$TARGET_URL" "${auth[@]}" -pid "$TARGET_PID" -conns "$C_CONNS" -settle "$C_SETTLE")"
		if [ -n "$BENCH_PPROF_DIR" ] && [ "$TARGET" = gatehouse ]; then
			curl -s -o "$BENCH_PPROF_DIR/c-run$run.heap.pprof" "http://127.0.0.1:$GW_ADMIN_PORT/debug/pprof/heap"
			curl -s "http://127.0.0.1:$GW_ADMIN_PORT/debug/pprof/heap?debug=1" | sed -n '/^# runtime.MemStats/,$p' >"$BENCH_PPROF_DIR/c-run$run.memstats.txt"
			curl -s -o "$BENCH_PPROF_DIR/c-run$run.goroutines.txt" "http://127.0.0.1:$GW_ADMIN_PORT/debug/pprof/goroutine?debug=1"
		fi
		sample c kib_per_conn "(c) $C_CONNS idle conns: KiB per connection" "$TARGET" "$run" "$(field kib_per_conn "$out")"
		;;
	d)
		start_target "$TARGET"
		out="$(wsload echo -url "$TARGET_URL" "${auth[@]}" -conns "$D_CONNS" -size 1048576 -warmup "$D_WARMUP" -duration "$D_DURATION")"
		sample d mb_per_s "(d) 1 MiB messages, $D_CONNS conns: MB/s" "$TARGET" "$run" "$(field mb_per_s "$out")"
		;;
	e)
		[ "$TARGET" = gatehouse ] || return 0
		local i nodes=() urls=""
		for ((i = 1; i <= E_NODES; i++)); do
			start_gateway "node$i"
			nodes+=("$BG_PID")
			urls="${urls:+$urls,}ws://127.0.0.1:$GW_PORT/echo"
		done
		out="$(wsload propagate -management-url "$MGMT" -token "$ADMIN_TOKEN" -subscription "$SERVICE/subscriptions/probe" \
			-nodes "$urls" -header "Ocp-Apim-Subscription-Key: $PROBE_KEY" -jwt-key "$JWT_KEY" -n "$E_WRITES")"
		for i in "${nodes[@]}"; do stop_pid "$i"; done
		sample e p50_ms "(e) write → enforced on $E_NODES nodes: p50, ms" gatehouse "$run" "$(field p50_ms "$out")"
		sample e p99_ms "(e) write → enforced on $E_NODES nodes: p99, ms" gatehouse "$run" "$(field p99_ms "$out")"
		;;
	esac
	log "run $run ($s) $TARGET: $out"
	stop_target
}

# --- main ---------------------------------------------------------------------------------
machine="$(nproc) cores ($(sed -nE 's/^model name[^:]*: *//p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
versions="$(go version | awk '{print $3}'); $(nginx -v 2>&1 | sed 's/.*version: //' || true); HAProxy $(haproxy -v 2>/dev/null | sed -nE '1s/.*version ([^ ]+).*/\1/p' || true)"
log "machine: $machine"

case " $BENCH_TARGETS " in *" gatehouse "*)
	start_management
	auth=(-header "Ocp-Apim-Subscription-Key: $KEY" -jwt-key "$JWT_KEY")
	;;
esac

started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
for ((run = 1; run <= BENCH_RUNS; run++)); do
	for s in $BENCH_SCENARIOS; do
		for t in $BENCH_TARGETS; do
			run_scenario "$s" "$run" "$t"
		done
	done
done

mkdir -p bench-results
result="bench-results/$(date -u +%Y%m%dT%H%M%SZ).md"
{
	echo "# WebSocket benchmark, $started"
	echo
	echo "Machine: $machine. Versions: $versions."
	echo "Load generator, proxy and echo backend share these cores. Runs: $BENCH_RUNS$([ "$BENCH_QUICK" = 1 ] && echo ' (quick mode: short runs, fewer connections — not figures to quote)')."
	echo "Command: \`BENCH_RUNS=$BENCH_RUNS BENCH_QUICK=$BENCH_QUICK make bench\`${BENCH_GATEWAY_ENV:+ with BENCH_GATEWAY_ENV=\"$BENCH_GATEWAY_ENV\"}$([ "$GATEWAY_BIN" = bin/gateway ] || echo " with GATEWAY_BIN=$GATEWAY_BIN")."
	echo
	bin/wsload report -in "$samples"
} >"$result"
cat "$result"
echo
log "written to $result; logs in $work"
