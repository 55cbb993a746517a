#!/usr/bin/env bash
# run.sh: the gateway benchmark (make bench, make bench-scale; docs/performance.md, issues 7 and 16).
#
# On this one machine it starts a fixed echo backend (bin/benchecho, which also serves the REST
# backend) and then, in turn, each target in front of it: the backend direct, a Gatehouse gateway
# (management with embedded NATS and a fresh Postgres database; the WebSocket API checks a
# subscription key and validate-jwt on the handshake, the REST API a key and its operation),
# Gatehouse with its old relay engine (target gatehouse-goroutine: GATEWAY_ENGINE=goroutine; not
# in the default list), nginx and HAProxy (Debian packages, installed when missing; configured by
# scripts/bench/nginx.conf, nginx-rest.conf and haproxy.cfg). The load generators (bin/wsload,
# and wrk for REST) are processes of their own. Every proxy is started fresh for each scenario
# and stopped after it:
#   (a) 1,000 connections echoing 256-byte messages as fast as they go: messages/s, p50/p99 RTT
#   (b) handshake storm, 16 workers: upgrades/s (each fully checked by the gateway)
#   (c) 8,000 idle connections: RSS delta per connection of the proxy, workers included
#   (d) 1 MiB messages over 8 connections: MB/s
#   (e) 5 gateway nodes: a write's 2xx → enforced on every node, p50/p99
#   (f) (a) and (b) over TLS 1.3 (wss): the proxy terminates TLS with an ECDSA P-256 certificate
#       made for the run; the client offers X25519 only and never resumes a session
#   (g) REST: wrk, 64 keep-alive connections, 2 threads, GET of a 100-byte JSON: requests/s, p99
#   (j) (a) to a wss backend: plain clients, the proxy speaks TLS 1.3 to the echo backend (which
#       serves it with the run's certificate; nginx does not verify it, Gatehouse does)
#   (h) one node filled to the descriptor limit (about 9,900 sessions at 20,000 descriptors):
#       time to open, RSS per session, a change and a revocation → enforced, while all are open
#   (i) 45,000 idle sessions over 5 nodes: the same, on every node
# (h) and (i) are long and run only when BENCH_SCENARIOS names them (make bench-scale does).
# Their load is split over processes of at most SCALE_SHARD sessions each (wsload hold and
# benchecho -buf 4096, one API per backend), so no process nears its descriptor limit.
# Each scenario runs BENCH_RUNS times (3); the report quotes medians, each with its ratio to
# nginx and to direct (the median of the ratios within each run, where the targets ran back to
# back), and is printed and written to bench-results/<timestamp>.md.
#
# Settings: DATABASE_URL (make bench passes one in), BENCH_RUNS (3), BENCH_QUICK=1 (short
# runs and fewer connections: checks the suite end to end in a few minutes; one run unless
# BENCH_RUNS is set), BENCH_TARGETS ("direct gatehouse nginx haproxy"; gatehouse-goroutine
# and proto-gnet, the gnet v2 prototype cmd/relayproto of issue 16 whose handshake checks
# nothing, may be added), BENCH_SCENARIOS ("a b c d e f g j"; h and i may be added), BENCH_GATEWAY_ENV
# (extra VAR=value words for the gateway, e.g. "GOGC=200"), GATEWAY_BIN (a gateway binary to
# measure instead of building bin/gateway: compare builds), BENCH_PPROF_DIR (if set, the
# gateway's CPU profile of (a), (b), (f), (g) and (j) and heap profile of (c) are saved there),
# BENCH_ATTACH (a command run with the proxy's process id and the run's name as arguments, in
# the background, at the start of each measured run of (a), (b), (f), (g) and (j), for every
# target with a process: e.g. a script running "strace -c -f -p $1" or "perf record -p $1"
# for a few seconds). The
# scenario parameters can be set one by one for experiments: A_CONNS, A_WARMUP, A_DURATION,
# B_WORKERS, B_WARMUP, B_DURATION ((f) uses the A_ and B_ settings), C_CONNS, C_SETTLE, D_CONNS,
# D_WARMUP, D_DURATION, E_NODES, E_WRITES, G_CONNS, G_THREADS, G_WARMUP, G_DURATION (whole
# seconds), H_SESSIONS (default: what the descriptor limit allows), I_NODES, I_SESSIONS,
# SCALE_WRITES, SCALE_HOLD (sessions per node revoked by each suspension), SCALE_SHARD,
# SCALE_SETTLE. Logs stay in a temporary folder, printed at the end.
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
	: "${G_WARMUP:=1s}" "${G_DURATION:=3s}"
	: "${H_SESSIONS:=2000}" "${I_SESSIONS:=5000}" "${SCALE_WRITES:=4}" "${SCALE_SETTLE:=1s}" "${SCALE_SHARD:=1000}"
else
	BENCH_RUNS="${BENCH_RUNS:-3}"
	: "${A_CONNS:=1000}" "${A_WARMUP:=3s}" "${A_DURATION:=15s}"
	: "${B_WARMUP:=2s}" "${B_DURATION:=10s}"
	: "${C_CONNS:=8000}" "${C_SETTLE:=5s}"
	: "${D_CONNS:=8}" "${D_WARMUP:=2s}" "${D_DURATION:=10s}"
	: "${E_WRITES:=40}"
	: "${G_WARMUP:=2s}" "${G_DURATION:=10s}"
	: "${I_SESSIONS:=45000}" "${SCALE_WRITES:=20}" "${SCALE_SETTLE:=5s}"
fi
: "${B_WORKERS:=16}" "${E_NODES:=5}" "${G_CONNS:=64}" "${G_THREADS:=2}"
: "${I_NODES:=5}" "${SCALE_HOLD:=4}" "${SCALE_SHARD:=5000}"
BENCH_TARGETS="${BENCH_TARGETS:-direct gatehouse nginx haproxy}"
BENCH_SCENARIOS="${BENCH_SCENARIOS:-a b c d e f g j}"
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
# A scale node holds two descriptors per session; 200 stay for its listeners, NATS, management
# (about 15 in all) and the probes of the propagation measurement: 9,900 sessions at 20,000.
NODE_SESSIONS=$(((NOFILE - 200) / 2))
: "${H_SESSIONS:=$NODE_SESSIONS}"
if [ "$H_SESSIONS" -gt "$NODE_SESSIONS" ] || [ $((I_SESSIONS / I_NODES)) -gt "$NODE_SESSIONS" ]; then
	die "H_SESSIONS $H_SESSIONS or I_SESSIONS/I_NODES $((I_SESSIONS / I_NODES)) exceeds the $NODE_SESSIONS sessions a node can hold at ulimit -n $NOFILE"
fi
[ "$SCALE_SHARD" -le $((NOFILE - 400)) ] || die "SCALE_SHARD $SCALE_SHARD exceeds what a process may open at ulimit -n $NOFILE"

# selected WORD: is scenario WORD in BENCH_SCENARIOS (or target WORD in BENCH_TARGETS)?
scenario_selected() { case " $BENCH_SCENARIOS " in *" $1 "*) return 0 ;; esac; return 1; }
target_selected() { case " $BENCH_TARGETS " in *" $1 "*) return 0 ;; esac; return 1; }

need_cmd curl
need_cmd python3
command -v psql >/dev/null 2>&1 || apt_install postgresql-client
! target_selected nginx || need_cmd nginx
! target_selected haproxy || need_cmd haproxy
! scenario_selected g || need_cmd wrk

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

# --- the certificates, the echo backend, the REST backend ---------------------------------
# (f), (j): a CA and a server certificate for 127.0.0.1, ECDSA P-256, made once per run.
TLS_DIR="$work/tls"
! scenario_selected f && ! scenario_selected j || bin/wsload certs -dir "$TLS_DIR" >/dev/null

ECHO_PORT="$(free_port)"
REST_PORT="$(free_port)"
ECHO_TLS_PORT="" echo_tls=()
if scenario_selected j; then
	ECHO_TLS_PORT="$(free_port)"
	echo_tls=(-tls-listen "127.0.0.1:$ECHO_TLS_PORT" -tls-cert "$TLS_DIR/cert.pem" -tls-key "$TLS_DIR/key.pem")
fi
start_bg benchecho bin/benchecho -listen "127.0.0.1:$ECHO_PORT" -rest-listen "127.0.0.1:$REST_PORT" "${echo_tls[@]}"
wait_200 "http://127.0.0.1:$ECHO_PORT/healthz" || die "the echo backend did not start (log: $work/benchecho.log)"
wait_200 "http://127.0.0.1:$REST_PORT/items/42" || die "the REST backend did not start (log: $work/benchecho.log)"
[ -z "$ECHO_TLS_PORT" ] || curl -sf --cacert "$TLS_DIR/ca.pem" -o /dev/null "https://127.0.0.1:$ECHO_TLS_PORT/healthz" ||
	die "the echo backend's TLS listener did not start (log: $work/benchecho.log)"

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
	arm PUT /apis/echo "{\"properties\":{\"displayName\":\"Echo\",\"type\":\"websocket\",\"path\":\"echo\",\"protocols\":[\"ws\",\"wss\"],\"serviceUrl\":\"ws://127.0.0.1:$ECHO_PORT/echo\"}}" >/dev/null
	arm PUT /apis/echo/operations/onHandshake/policies/policy "{\"properties\":{\"format\":\"xml\",\"value\":\"$policy\"}}" >/dev/null
	# (g): an HTTP API whose one operation must match; the key is its only policy.
	arm PUT /apis/rest "{\"properties\":{\"displayName\":\"REST\",\"type\":\"http\",\"path\":\"rest\",\"protocols\":[\"http\"],\"serviceUrl\":\"http://127.0.0.1:$REST_PORT\"}}" >/dev/null
	arm PUT /apis/rest/operations/get-item '{"properties":{"displayName":"Get item","method":"GET","urlTemplate":"/items/{id}","templateParameters":[{"name":"id","type":"string","required":true}]}}' >/dev/null
	arm PUT /products/bench '{"properties":{"displayName":"Bench","state":"published","subscriptionRequired":true}}' >/dev/null
	arm PUT /products/bench/apis/echo >/dev/null
	arm PUT /products/bench/apis/rest >/dev/null
	arm PUT /subscriptions/bench '{"properties":{"displayName":"bench","scope":"/products/bench","state":"active"}}' >/dev/null
	arm PUT /subscriptions/probe '{"properties":{"displayName":"probe","scope":"/products/bench","state":"active"}}' >/dev/null
	KEY="$(arm POST /subscriptions/bench/listSecrets | json_field primaryKey)"
	PROBE_KEY="$(arm POST /subscriptions/probe/listSecrets | json_field primaryKey)"
	arm PUT /gateways/bench '{"properties":{"locationData":{"name":"bench"},"description":"make bench"}}' >/dev/null
	arm PUT /gateways/bench/apis/echo >/dev/null
	arm PUT /gateways/bench/apis/rest >/dev/null
	if [ -n "$ECHO_TLS_PORT" ]; then # (j): the echo behind TLS, the key its only check
		arm PUT /apis/echotls "{\"properties\":{\"displayName\":\"Echo over TLS\",\"type\":\"websocket\",\"path\":\"echotls\",\"protocols\":[\"ws\"],\"serviceUrl\":\"wss://127.0.0.1:$ECHO_TLS_PORT/echo\"}}" >/dev/null
		arm PUT /products/bench/apis/echotls >/dev/null
		arm PUT /gateways/bench/apis/echotls >/dev/null
	fi
	GW_TOKEN="$(arm POST /gateways/bench/generateToken "{\"keyType\":\"primary\",\"expiry\":\"$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)\"}" | json_field value)"
	[ -n "$KEY" ] && [ -n "$PROBE_KEY" ] && [ -n "$GW_TOKEN" ] || die "seeding did not yield keys and a gateway token"
}

# seed_scale N: N echo backends for the scale scenarios (benchecho with small buffers, each
# holding at most SCALE_SHARD sessions) and an API scale1 … scaleN in front of each (key only).
SCALE_BACKENDS=0
seed_scale() {
	local k port
	for ((k = 1; k <= $1; k++)); do
		port="$(free_port)"
		start_bg "scale-echo$k" bin/benchecho -listen "127.0.0.1:$port" -buf 4096
		wait_200 "http://127.0.0.1:$port/healthz" || die "echo backend scale-echo$k did not start (log: $work/scale-echo$k.log)"
		arm PUT "/apis/scale$k" "{\"properties\":{\"displayName\":\"Scale $k\",\"type\":\"websocket\",\"path\":\"scale$k\",\"protocols\":[\"ws\"],\"serviceUrl\":\"ws://127.0.0.1:$port/echo\"}}" >/dev/null
		arm PUT "/products/bench/apis/scale$k" >/dev/null
		arm PUT "/gateways/bench/apis/scale$k" >/dev/null
	done
	SCALE_BACKENDS=$1
}

# start_gateway NAME [VAR=value...] sets GW_PORT and GW_ADMIN_PORT and BG_PID of a new ready
# gateway node, with the settings given added to its environment.
GW_PORT="" GW_ADMIN_PORT=""
start_gateway() {
	local name="$1"
	shift
	GW_PORT="$(free_port)"
	GW_ADMIN_PORT="$(free_port)"
	local pprof=false
	[ -z "$BENCH_PPROF_DIR" ] || pprof=true
	# shellcheck disable=SC2086 # BENCH_GATEWAY_ENV is a list of VAR=value words
	start_bg "$name" env GATEWAY_TOKEN="$GW_TOKEN" MANAGEMENT_URL="$MGMT" GATEWAY_LISTEN="127.0.0.1:$GW_PORT" \
		GATEWAY_ADMIN_LISTEN="127.0.0.1:$GW_ADMIN_PORT" GATEWAY_CACHE_DIR="$work/cache-$name" GATEWAY_PPROF="$pprof" \
		LOG_LEVEL=warn $BENCH_GATEWAY_ENV "$@" "$GATEWAY_BIN"
	wait_200 "http://127.0.0.1:$GW_ADMIN_PORT/readyz" || die "gateway $name did not become ready (log: $work/$name.log)"
}

# engine_env TARGET prints the gateway settings of a Gatehouse target: the old relay engine for
# gatehouse-goroutine, nothing (the default engine) for gatehouse.
engine_env() { [ "$1" != gatehouse-goroutine ] || echo GATEWAY_ENGINE=goroutine; }
is_gatehouse() { case "$1" in gatehouse | gatehouse-goroutine) return 0 ;; esac; return 1; }

# --- targets ----------------------------------------------------------------------------
# start_target TARGET [KIND] starts TARGET fresh in front of the WebSocket echo (KIND ws, the
# default), in front of it over TLS (wss: the proxy terminates TLS with the run's certificate),
# in front of its TLS listener (wssbackend: plain clients, TLS to the backend), or in front of
# the REST backend (rest), and sets TARGET_URL, TARGET_PID (the process whose
# memory counts, with its children) and PROXY_PID (to stop; empty for direct).
TARGET_URL="" TARGET_PID="" PROXY_PID=""
start_target() {
	local target="$1" kind="${2:-ws}" port conf scheme=ws path=/echo backend="127.0.0.1:$ECHO_PORT" env=()
	local nginx_ssl="" nginx_tls="" haproxy_ssl="" upstream_scheme=http upstream_tls=""
	case "$kind" in
	wss)
		scheme=wss
		nginx_ssl=ssl
		nginx_tls="ssl_certificate $TLS_DIR/cert.pem; ssl_certificate_key $TLS_DIR/key.pem; ssl_protocols TLSv1.3;"
		# HAProxy prefers its own order (AES-256 first) unless told; the others follow the client's.
		haproxy_ssl="ssl crt $TLS_DIR/cert+key.pem ssl-min-ver TLSv1.3 prefer-client-ciphers"
		env=(GATEWAY_TLS_CERT="$TLS_DIR/cert.pem" GATEWAY_TLS_KEY="$TLS_DIR/key.pem")
		;;
	rest) scheme=http path=/rest/items/42 backend="127.0.0.1:$REST_PORT" ;; # the backend answers any GET
	wssbackend)
		path=/echotls backend="127.0.0.1:$ECHO_TLS_PORT" upstream_scheme=https
		upstream_tls="proxy_ssl_protocols TLSv1.3; proxy_ssl_verify off;"
		env=(GATEWAY_BACKEND_CA_BUNDLE="$TLS_DIR/ca.pem")
		;;
	esac
	case "$target" in
	direct)
		[ "$kind" != wss ] || die "direct has no TLS"
		TARGET_URL="$scheme://$backend$path" TARGET_PID="" PROXY_PID=""
		return
		;;
	gatehouse | gatehouse-goroutine)
		# shellcheck disable=SC2046 # engine_env prints zero or one VAR=value word
		start_gateway gateway "${env[@]}" $(engine_env "$target")
		TARGET_URL="$scheme://127.0.0.1:$GW_PORT$path"
		;;
	nginx)
		port="$(free_port)"
		conf=scripts/bench/nginx.conf
		[ "$kind" != rest ] || conf=scripts/bench/nginx-rest.conf
		mkdir -p "$work/nginx"
		sed -e "s#@WORK@#$work/nginx#g; s#@LISTEN@#127.0.0.1:$port#; s#@BACKEND@#$backend#; s#@NOFILE@#$PROXY_NOFILE#g" \
			-e "s#@SSL@#$nginx_ssl#; s#@TLS@#$nginx_tls#; s#@UPSTREAM_SCHEME@#$upstream_scheme#; s#@UPSTREAM_TLS@#$upstream_tls#" \
			"$conf" >"$work/nginx/nginx.conf"
		start_bg nginx nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;'
		wait_port "$port" || die "nginx did not start (log: $work/nginx.log, $work/nginx/nginx-error.log)"
		TARGET_URL="$scheme://127.0.0.1:$port$path"
		;;
	haproxy)
		port="$(free_port)"
		sed -e "s#@THREADS@#$(nproc)#; s#@LISTEN@#127.0.0.1:$port#; s#@BACKEND@#$backend#; s#@MAXCONN@#$PROXY_MAXCONN#g" \
			-e "s#@SSL@#$haproxy_ssl#" scripts/bench/haproxy.cfg >"$work/haproxy.cfg"
		start_bg haproxy haproxy -db -f "$work/haproxy.cfg"
		wait_port "$port" || die "haproxy did not start (log: $work/haproxy.log)"
		TARGET_URL="$scheme://127.0.0.1:$port$path"
		;;
	proto-gnet) # the gnet v2 prototype (issue 16): no checks on the handshake, so (b) does not compare
		port="$(free_port)"
		start_bg relayproto bin/relayproto -listen "127.0.0.1:$port" -backend "127.0.0.1:$ECHO_PORT"
		wait_port "$port" || die "relayproto did not start (log: $work/relayproto.log)"
		TARGET_URL="ws://127.0.0.1:$port/echo"
		;;
	*) die "unknown target $target" ;;
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
	[ -z "${BENCH_ATTACH:-}" ] || [ -z "$TARGET_PID" ] || $BENCH_ATTACH "$TARGET_PID" "$TARGET-$1" >>"$work/attach.log" 2>&1 &
	[ -n "$BENCH_PPROF_DIR" ] && is_gatehouse "$TARGET" || return 0
	local name="$1"
	[ "$TARGET" = gatehouse ] || name="$TARGET-$1"
	curl -s -o "$BENCH_PPROF_DIR/$name.cpu.pprof" "http://127.0.0.1:$GW_ADMIN_PORT/debug/pprof/profile?seconds=$2" &
	PPROF_PID=$!
}
pprof_wait() { [ -z "$PPROF_PID" ] || wait "$PPROF_PID" || true; }

secs() { sed -E 's/s$//' <<<"$1"; }

# echo_load SCENARIO RUN KIND LABEL runs (a)'s echo load against TARGET started for KIND and
# samples it under LABEL.
echo_load() {
	local s="$1" run="$2" kind="$3" label="$4" # out is the caller's (run_scenario logs it)
	start_target "$TARGET" "$kind"
	pprof_during "$s-run$run" "$(($(secs "$A_WARMUP") + $(secs "$A_DURATION") - 1))"
	out="$(wsload echo -url "$TARGET_URL" "${auth[@]}" -conns "$A_CONNS" -size 256 -warmup "$A_WARMUP" -duration "$A_DURATION" ${TARGET_PID:+-pid "$TARGET_PID"})"
	pprof_wait
	sample "$s" msgs_per_s "$label $A_CONNS conns × 256 B: messages/s" "$TARGET" "$run" "$(field msgs_per_s "$out")"
	sample "$s" p50_ms "$label p50 round trip, ms" "$TARGET" "$run" "$(field p50_ms "$out")"
	sample "$s" p99_ms "$label p99 round trip, ms" "$TARGET" "$run" "$(field p99_ms "$out")"
	[ -z "$TARGET_PID" ] || sample "$s" cpu_us "$label proxy CPU per round trip, µs" "$TARGET" "$run" "$(field cpu_us_per_op "$out")"
}

run_scenario() {
	local s="$1" run="$2" out
	TARGET="$3"
	case "$s" in
	a) echo_load a "$run" ws "(a)" ;;
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
		if [ -n "$BENCH_PPROF_DIR" ] && [ "$TARGET" = gatehouse ]; then # the default engine only
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
		is_gatehouse "$TARGET" || return 0
		local i nodes=() urls=""
		for ((i = 1; i <= E_NODES; i++)); do
			# shellcheck disable=SC2046 # engine_env prints zero or one VAR=value word
			start_gateway "node$i" $(engine_env "$TARGET")
			nodes+=("$BG_PID")
			urls="${urls:+$urls,}ws://127.0.0.1:$GW_PORT/echo"
		done
		out="$(wsload propagate -management-url "$MGMT" -token "$ADMIN_TOKEN" -subscription "$SERVICE/subscriptions/probe" \
			-nodes "$urls" -header "Ocp-Apim-Subscription-Key: $PROBE_KEY" -jwt-key "$JWT_KEY" -n "$E_WRITES")"
		for i in "${nodes[@]}"; do stop_pid "$i"; done
		sample e p50_ms "(e) write → enforced on $E_NODES nodes: p50, ms" "$TARGET" "$run" "$(field p50_ms "$out")"
		sample e p99_ms "(e) write → enforced on $E_NODES nodes: p99, ms" "$TARGET" "$run" "$(field p99_ms "$out")"
		;;
	f)
		[ "$TARGET" != direct ] || return 0 # the echo backend speaks no TLS
		[ "$TARGET" != proto-gnet ] || return 0 # no TLS in gnet
		start_target "$TARGET" wss
		pprof_during "f-echo-run$run" "$(($(secs "$A_WARMUP") + $(secs "$A_DURATION") - 1))"
		out="$(wsload echo -url "$TARGET_URL" -ca "$TLS_DIR/ca.pem" "${auth[@]}" -conns "$A_CONNS" -size 256 -warmup "$A_WARMUP" -duration "$A_DURATION" ${TARGET_PID:+-pid "$TARGET_PID"})"
		pprof_wait
		log "run $run ($s, echo) $TARGET: $out"
		TLS_SEEN[$TARGET]="TLS $(field tls "$out") $(field cipher "$out") $(field curve "$out")"
		sample f msgs_per_s "(f) wss $A_CONNS conns × 256 B: messages/s" "$TARGET" "$run" "$(field msgs_per_s "$out")"
		sample f p50_ms "(f) wss p50 round trip, ms" "$TARGET" "$run" "$(field p50_ms "$out")"
		sample f p99_ms "(f) wss p99 round trip, ms" "$TARGET" "$run" "$(field p99_ms "$out")"
		sample f cpu_us "(f) wss proxy CPU per round trip, µs" "$TARGET" "$run" "$(field cpu_us_per_op "$out")"
		stop_target
		start_target "$TARGET" wss
		pprof_during "f-handshake-run$run" "$(($(secs "$B_WARMUP") + $(secs "$B_DURATION") - 1))"
		out="$(wsload handshake -url "$TARGET_URL" -ca "$TLS_DIR/ca.pem" "${auth[@]}" -workers "$B_WORKERS" -warmup "$B_WARMUP" -duration "$B_DURATION" ${TARGET_PID:+-pid "$TARGET_PID"})"
		pprof_wait
		[ "$(field resumed "$out")" = false ] || die "a TLS session was resumed in (f): $out"
		sample f hs_per_s "(f) wss handshakes/s, $B_WORKERS workers (full TLS handshakes)" "$TARGET" "$run" "$(field per_s "$out")"
		sample f hs_p99_ms "(f) wss p99 handshake, ms" "$TARGET" "$run" "$(field p99_ms "$out")"
		sample f hs_cpu_us "(f) wss proxy CPU per handshake, µs" "$TARGET" "$run" "$(field cpu_us_per_op "$out")"
		;;
	j)
		case "$TARGET" in direct | haproxy | proto-gnet) return 0 ;; esac # nginx and Gatehouse only
		echo_load j "$run" wssbackend "(j) wss backend,"
		;;
	g)
		[ "$TARGET" != proto-gnet ] || return 0 # a WebSocket relay only
		start_target "$TARGET" rest
		pprof_during "g-run$run" "$(($(secs "$G_DURATION") - 1))"
		out="$(wsload rest -url "$TARGET_URL" -header "Ocp-Apim-Subscription-Key: ${KEY:-none}" -conns "$G_CONNS" -threads "$G_THREADS" \
			-warmup "$G_WARMUP" -duration "$G_DURATION" ${TARGET_PID:+-pid "$TARGET_PID"})"
		pprof_wait
		sample g per_s "(g) REST GET, $G_CONNS conns: requests/s" "$TARGET" "$run" "$(field per_s "$out")"
		sample g p50_ms "(g) REST p50, ms" "$TARGET" "$run" "$(field p50_ms "$out")"
		sample g p99_ms "(g) REST p99, ms" "$TARGET" "$run" "$(field p99_ms "$out")"
		[ -z "$TARGET_PID" ] || sample g cpu_us "(g) proxy CPU per request, µs" "$TARGET" "$run" "$(field cpu_us_per_op "$out")"
		;;
	h)
		is_gatehouse "$TARGET" || return 0
		run_scale h 1 "$H_SESSIONS"
		out="$SCALE_OUT"
		;;
	i)
		is_gatehouse "$TARGET" || return 0
		run_scale i "$I_NODES" "$I_SESSIONS"
		out="$SCALE_OUT"
		;;
	esac
	log "run $run ($s) $TARGET: $out"
	stop_target
}

# shards NODES SESSIONS prints how many load processes (and backends) each node's sessions are
# split over: at most SCALE_SHARD sessions each.
shards() { echo $((($2 / $1 + SCALE_SHARD - 1) / SCALE_SHARD)); }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# run_scale SCENARIO NODES SESSIONS runs (h) or (i) on target TARGET, run $run: NODES fresh
# gateway nodes, SESSIONS idle sessions spread evenly over them by load processes of at most
# SCALE_SHARD sessions (wsload hold, each through its own API to its own echo backend); once
# all are open, the propagation of SCALE_WRITES suspensions and reactivations of the probe
# subscription, with SCALE_HOLD of its sessions per node to revoke at each suspension; at the
# end every held session must still echo. Samples go to the report; SCALE_OUT gets the figures.
SCALE_OUT=""
run_scale() {
	local s="$1" n="$2" total="$3" per_node=$(($3 / $2)) spn k i h pid t0 t_end=0 done_ms alive=0 a
	spn="$(shards "$n" "$total")"
	local nodes=() ports=() before=() holds=() urls=""
	for ((i = 1; i <= n; i++)); do
		# shellcheck disable=SC2046 # engine_env prints zero or one VAR=value word
		start_gateway "$s-node$i" $(engine_env "$TARGET")
		nodes+=("$BG_PID")
		ports+=("$GW_PORT")
		urls="${urls:+$urls,}ws://127.0.0.1:$GW_PORT/echo"
	done
	sleep "$(secs "$SCALE_SETTLE")"
	for ((i = 0; i < n; i++)); do before+=("$(rss_kib "${nodes[i]}")"); done

	log "run $run ($s) $TARGET: opening $((per_node * n)) sessions on $n node(s), $spn load process(es) per node"
	t0="$(now_ms)"
	for ((i = 0; i < n; i++)); do
		for ((k = 0; k < spn; k++)); do
			local shard=$((i * spn + k + 1)) count=$((per_node / spn + (k < per_node % spn ? 1 : 0)))
			: >"$work/$s-hold$shard.log"
			start_bg "$s-hold$shard" bin/wsload hold -url "ws://127.0.0.1:${ports[i]}/scale$shard" \
				-header "Ocp-Apim-Subscription-Key: $KEY" -conns "$count"
			holds+=("$BG_PID:$shard")
		done
	done
	for h in "${holds[@]}"; do
		local shard="${h##*:}" deadline=$((SECONDS + 900))
		pid="${h%%:*}"
		until done_ms="$(field done_unix_ms "$(grep -h '^opened=' "$work/$s-hold$shard.log")")" && [ -n "$done_ms" ]; do
			kill -0 "$pid" 2>/dev/null || die "load process $s-hold$shard failed: $(tail -3 "$work/$s-hold$shard.log")"
			[ "$SECONDS" -lt "$deadline" ] || die "load process $s-hold$shard did not open its sessions in 15 minutes"
			sleep 0.2
		done
		[ "$done_ms" -le "$t_end" ] || t_end="$done_ms"
	done
	local open_s
	open_s="$(awk -v ms=$((t_end - t0)) 'BEGIN {printf "%.2f", ms / 1000}')"
	sleep "$(secs "$SCALE_SETTLE")"

	local fds=0 f
	for ((i = 0; i < n; i++)); do
		f="$(find "/proc/${nodes[i]}/fd" -mindepth 1 -maxdepth 1 | wc -l)"
		[ "$f" -le "$fds" ] || fds="$f"
	done
	local what="one node, $((per_node * n)) sessions" where="the node"
	[ "$n" = 1 ] || what="$n nodes, $((per_node * n)) sessions" where="every node"
	sample "$s" open_s "($s) $what: time to open, s" "$TARGET" "$run" "$open_s"
	for ((i = 0; i < n; i++)); do
		local kib label="($s) RSS per session, KiB"
		[ "$n" = 1 ] || label="($s) node $((i + 1)): RSS per session, KiB"
		kib="$(awk -v a="$(rss_kib "${nodes[i]}")" -v b="${before[i]}" -v c="$per_node" 'BEGIN {printf "%.2f", (a - b) / c}')"
		sample "$s" "kib_per_session_$((i + 1))" "$label" "$TARGET" "$run" "$kib"
	done

	local prop
	prop="$(wsload propagate -management-url "$MGMT" -token "$ADMIN_TOKEN" -subscription "$SERVICE/subscriptions/probe" \
		-nodes "$urls" -header "Ocp-Apim-Subscription-Key: $PROBE_KEY" -jwt-key "$JWT_KEY" -n "$SCALE_WRITES" -hold "$SCALE_HOLD")"
	sample "$s" change_p50_ms "($s) change → enforced on $where: p50, ms" "$TARGET" "$run" "$(field p50_ms "$prop")"
	sample "$s" change_p99_ms "($s) change → enforced on $where: p99, ms" "$TARGET" "$run" "$(field p99_ms "$prop")"
	sample "$s" revoke_p50_ms "($s) revocation → $((SCALE_HOLD * n)) sessions closed: p50, ms" "$TARGET" "$run" "$(field revoke_p50_ms "$prop")"
	sample "$s" revoke_p99_ms "($s) revocation → $((SCALE_HOLD * n)) sessions closed: p99, ms" "$TARGET" "$run" "$(field revoke_p99_ms "$prop")"

	# Every held session must have outlived the probe subscription's revocations.
	for h in "${holds[@]}"; do kill -TERM "${h%%:*}" 2>/dev/null || true; done
	for h in "${holds[@]}"; do
		wait "${h%%:*}" 2>/dev/null || true
		a="$(field alive "$(grep -h '^alive=' "$work/$s-hold${h##*:}.log")")"
		alive=$((alive + ${a:-0}))
	done
	sample "$s" alive "($s) sessions still echoing at the end" "$TARGET" "$run" "$alive"
	for pid in "${nodes[@]}"; do stop_pid "$pid"; done
	SCALE_OUT="sessions=$((per_node * n)) open_s=$open_s node_max_fds=$fds alive=$alive $prop"
}

# --- main ---------------------------------------------------------------------------------
machine="$(nproc) cores ($(sed -nE 's/^model name[^:]*: *//p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
versions="$(go version | awk '{print $3}'); $(nginx -v 2>&1 | sed 's/.*version: //' || true); HAProxy $(haproxy -v 2>/dev/null | sed -nE '1s/.*version ([^ ]+).*/\1/p' || true)"
log "machine: $machine"

if target_selected gatehouse || target_selected gatehouse-goroutine; then
	start_management
	auth=(-header "Ocp-Apim-Subscription-Key: $KEY" -jwt-key "$JWT_KEY")
	need_h=0 need_i=0
	! scenario_selected h || need_h="$(shards 1 "$H_SESSIONS")"
	! scenario_selected i || need_i=$((I_NODES * $(shards "$I_NODES" "$I_SESSIONS")))
	[ $((need_h + need_i)) = 0 ] || seed_scale $((need_h > need_i ? need_h : need_i))
fi
declare -A TLS_SEEN=() # (f): what each target negotiated

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
	echo "# Gateway benchmark, $started"
	echo
	echo "Machine: $machine. Versions: $versions."
	echo "Load generator, proxy and echo backend share these cores. Runs: $BENCH_RUNS$([ "$BENCH_QUICK" = 1 ] && echo ' (quick mode: short runs, fewer connections — not figures to quote)')."
	echo "Command: \`BENCH_RUNS=$BENCH_RUNS BENCH_QUICK=$BENCH_QUICK BENCH_TARGETS=\"$BENCH_TARGETS\" BENCH_SCENARIOS=\"$BENCH_SCENARIOS\" scripts/bench/run.sh\`${BENCH_GATEWAY_ENV:+ with BENCH_GATEWAY_ENV=\"$BENCH_GATEWAY_ENV\"}$([ "$GATEWAY_BIN" = bin/gateway ] || echo " with GATEWAY_BIN=$GATEWAY_BIN")."
	if [ "${#TLS_SEEN[@]}" -gt 0 ]; then
		negotiated=""
		for t in $BENCH_TARGETS; do [ -z "${TLS_SEEN[$t]:-}" ] || negotiated="${negotiated:+$negotiated; }$t ${TLS_SEEN[$t]}"; done
		echo "(f): ECDSA P-256 certificate; negotiated: $negotiated; every handshake a full one (the client keeps no session tickets)."
	fi
	! scenario_selected h && ! scenario_selected i || echo "(h), (i): ulimit -n $NOFILE per process; at most $SCALE_SHARD sessions per load process and per echo backend; $SCALE_WRITES writes, $SCALE_HOLD sessions per node revoked by each suspension."
	echo
	bin/wsload report -in "$samples"
} >"$result"
cat "$result"
echo
log "written to $result; logs in $work"
