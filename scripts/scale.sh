#!/usr/bin/env bash
# scale.sh: measure a gateway against a large configuration and a small one (docs/scale.md).
# For each configuration: a fresh database seeded by cmd/seedscale (timed), bin/management with
# embedded NATS, then bin/gateway with a gateway token. It measures the gateway's cold start
# (process start to /readyz 200), its memory (VmRSS when ready and once settled, VmHWM peak),
# the snapshot (size and fetch time from management, as a stream and as JSON; compile time from
# the gateway's log), and the time from one ARM change (suspending a subscription) to its
# enforcement on the gateway, CHANGES (20) times, as p50/p99. It prints a table; logs stay in a temporary folder.
# DATABASE_URL names the server (make scale passes one in). LARGE_APIS (10000), LARGE_SUBS
# (1000000), SMALL_APIS (10), SMALL_SUBS (100) set the sizes; ONLY=small or ONLY=large runs one;
# MANAGEMENT_BIN and GATEWAY_BIN (bin/management, bin/gateway) compare other builds;
# GATEWAY_GOMEMLIMIT sets the gateway's GOMEMLIMIT (Go's soft memory limit; default: none).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

: "${DATABASE_URL:?DATABASE_URL is required (make scale sets it)}"
LARGE_APIS="${LARGE_APIS:-10000}"
LARGE_SUBS="${LARGE_SUBS:-1000000}"
SMALL_APIS="${SMALL_APIS:-10}"
SMALL_SUBS="${SMALL_SUBS:-100}"
CHANGES="${CHANGES:-20}"
ONLY="${ONLY:-}"
MANAGEMENT_BIN="${MANAGEMENT_BIN:-bin/management}"
GATEWAY_BIN="${GATEWAY_BIN:-bin/gateway}"
GATEWAY_GOMEMLIMIT="${GATEWAY_GOMEMLIMIT:-off}"

command -v psql >/dev/null || die "psql is required (Debian package postgresql-client)"
command -v curl >/dev/null || die "curl is required"
[ -x "$MANAGEMENT_BIN" ] && [ -x "$GATEWAY_BIN" ] || die "$MANAGEMENT_BIN or $GATEWAY_BIN is missing: run make build"
go build -trimpath -o bin/seedscale ./services/management/cmd/seedscale

work="$(mktemp -d -t gatehouse-scale-XXXXXX)"
admin_url="$DATABASE_URL"
admin_token="scale-admin-token"
psql_cmd() { PGCONNECT_TIMEOUT=5 psql "$admin_url" -v ON_ERROR_STOP=1 -qtAc "$1"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# cpu_s PID... prints the CPU time (user and system) the processes have used, in seconds.
cpu_s() { for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null; done | awk '{t += $14 + $15} END {printf "%.2f", t/100}'; }
# busy_s prints the CPU time every process of the machine has used, in seconds.
busy_s() { awk '$1 == "cpu" {printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / 100}' /proc/stat; }
# mib PID FIELD prints a /proc status field (VmRSS, VmHWM) in MiB.
mib() { awk -v f="$2:" '$1 == f {printf "%.0f", $2/1024}' "/proc/$1/status"; }

pids=()
dbs=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	for d in "${dbs[@]}"; do
		psql_cmd "DROP DATABASE IF EXISTS $d WITH (FORCE)" || true
	done
}
trap cleanup EXIT

# wait_200 URL TIMEOUT_S waits until URL answers 200, polling every 20 ms.
wait_200() {
	local deadline=$(($(now_ms) + $2 * 1000))
	until [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ]; do
		[ "$(now_ms)" -lt "$deadline" ] || return 1
		sleep 0.02
	done
}

rows=()

# measure LABEL APIS SUBS runs one configuration and appends a row to rows.
measure() {
	local label="$1" apis="$2" subs="$3"
	local db="gatehouse_scale_$$_$label"
	local url
	url="$(printf '%s' "$admin_url" | sed -E "s#/[^/?]*(\?|$)#/$db\1#")"
	psql_cmd "CREATE DATABASE $db"
	dbs+=("$db")

	log "$label: seeding $apis APIs and $subs subscriptions"
	local t0 token seed_s
	t0="$(now_ms)"
	token="$(bin/seedscale seed -database-url "$url" -apis "$apis" -subscriptions "$subs" 2>"$work/seed-$label.log")" ||
		{ cat "$work/seed-$label.log" >&2; die "$label: seeding failed"; }
	seed_s="$(awk -v ms=$(($(now_ms) - t0)) 'BEGIN {printf "%.1f", ms/1000}')"
	local db_mib
	db_mib="$(psql_cmd "SELECT pg_database_size('$db') / 1048576")"

	local mport gport aport
	mport="$(free_port)"
	gport="$(free_port)"
	aport="$(free_port)"
	DATABASE_URL="$url" MANAGEMENT_ADMIN_TOKEN="$admin_token" MANAGEMENT_LISTEN="127.0.0.1:$mport" \
		MANAGEMENT_ADMIN_LISTEN=127.0.0.1:0 NATS_EMBEDDED_LISTEN=127.0.0.1:0 LOG_LEVEL=info "$MANAGEMENT_BIN" 2>"$work/management-$label.log" &
	local mpid=$!
	pids+=("$mpid")
	wait_200 "http://127.0.0.1:$mport/readyz" 60 || die "$label: management did not become ready (log: $work/management-$label.log)"

	# A checkpoint now, not the one the bulk load calls for while the gateway starts.
	psql_cmd "CHECKPOINT"
	log "$label: starting the gateway"
	# The machine is shared: the CPU time of the gateway, management, Postgres and everything
	# else during the cold start tells whether it had the two cores to itself.
	local gstart busy0 mcpu0 pcpu0
	busy0="$(busy_s)" mcpu0="$(cpu_s "$mpid")" pcpu0="$(cpu_s $(pgrep -u postgres))"
	gstart="$(now_ms)"
	GOMEMLIMIT="$GATEWAY_GOMEMLIMIT" GATEWAY_TOKEN="$token" MANAGEMENT_URL="http://127.0.0.1:$mport" GATEWAY_LISTEN="127.0.0.1:$gport" \
		GATEWAY_ADMIN_LISTEN="127.0.0.1:$aport" GATEWAY_CACHE_DIR="$work/cache-$label" LOG_LEVEL=info \
		"$GATEWAY_BIN" 2>"$work/gateway-$label.log" &
	local gpid=$!
	pids+=("$gpid")
	wait_200 "http://127.0.0.1:$aport/readyz" 600 || die "$label: the gateway did not become ready (log: $work/gateway-$label.log)"
	local cold_ms=$(($(now_ms) - gstart))
	local cpu
	cpu="$(awk -v g="$(cpu_s "$gpid")" -v m="$(cpu_s "$mpid")" -v m0="$mcpu0" -v p="$(cpu_s $(pgrep -u postgres))" -v p0="$pcpu0" \
		-v b="$(busy_s)" -v b0="$busy0" 'BEGIN {printf "%.1f / %.1f / %.1f / %.1f s", g, m-m0, p-p0, (b-b0)-g-(m-m0)-(p-p0)}')"
	local rss_ready hwm_ready
	rss_ready="$(mib "$gpid" VmRSS)"
	hwm_ready="$(mib "$gpid" VmHWM)"
	local installed compile_ms fetch_ms keys
	installed="$(grep -m1 'configuration installed from snapshot' "$work/gateway-$label.log")"
	field() { sed -nE "s/.*\"$1\":([0-9]+).*/\1/p" <<<"$installed"; }
	compile_ms="$(field took_ms)"
	fetch_ms="$(field fetch_ms)"
	keys="$(field keys)"
	log "$label: ready in $cold_ms ms (fetch ${fetch_ms:--} ms, compile $compile_ms ms, $keys keys), RSS $rss_ready MiB (peak $hwm_ready MiB), CPU $cpu"

	# The node writes its cache after installing; memory has settled once the file exists.
	for _ in $(seq 1 600); do
		[ -f "$work/cache-$label/config.snapshot" ] && break
		sleep 0.1
	done
	sleep 2
	local rss_settled
	rss_settled="$(mib "$gpid" VmRSS)"

	# Management's side of a snapshot, fetched as the gateway does (a second fetch: warm caches),
	# as a stream, then as the JSON document that clients which ask for no stream get.
	local fetch fetch_s snap_mib json_s json_mib
	fetch="$(curl -s -o /dev/null -w '%{http_code} %{time_total} %{size_download}' -H "Accept: application/vnd.gatehouse.snapshot.v2" \
		-H "Authorization: GatewayKey $token" "http://127.0.0.1:$mport/gatehouse/gateway/v1/config")"
	[ "${fetch%% *}" = 200 ] || die "$label: snapshot fetch answered ${fetch%% *}"
	fetch_s="$(awk '{printf "%.2f", $2}' <<<"$fetch")"
	snap_mib="$(awk '{printf "%.1f", $3/1048576}' <<<"$fetch")"
	fetch="$(curl -s -o /dev/null -w '%{http_code} %{time_total} %{size_download}' \
		-H "Authorization: GatewayKey $token" "http://127.0.0.1:$mport/gatehouse/gateway/v1/config")"
	[ "${fetch%% *}" = 200 ] || die "$label: JSON snapshot fetch answered ${fetch%% *}"
	json_s="$(awk '{printf "%.2f", $2}' <<<"$fetch")"
	json_mib="$(awk '{printf "%.1f", $3/1048576}' <<<"$fetch")"

	log "$label: timing $CHANGES changes"
	local prop
	prop="$(MANAGEMENT_ADMIN_TOKEN="$admin_token" bin/seedscale propagate -management-url "http://127.0.0.1:$mport" \
		-gateway-url "http://127.0.0.1:$gport" -apis "$apis" -subscriptions "$subs" -n "$CHANGES" 2>"$work/propagate-$label.log")" ||
		{ cat "$work/propagate-$label.log" >&2; die "$label: propagation run failed"; }
	stat() { sed -nE "s/.*( |^)$1=([0-9.]+).*/\2/p" <<<"$prop"; }
	local p50 p99 pmax patch50 after50 after99
	p50="$(stat enforced_p50_ms)"
	p99="$(stat enforced_p99_ms)"
	pmax="$(stat enforced_max_ms)"
	patch50="$(stat patch_p50_ms)"
	after50="$(stat after_patch_p50_ms)"
	after99="$(stat after_patch_p99_ms)"

	local hwm_end rss_end mgmt_hwm
	rss_end="$(mib "$gpid" VmRSS)"
	hwm_end="$(mib "$gpid" VmHWM)"
	mgmt_hwm="$(mib "$mpid" VmHWM)"
	log "$label: $prop"

	kill "$gpid" "$mpid"
	wait "$gpid" 2>/dev/null || true
	wait "$mpid" 2>/dev/null || true
	rm -rf "$work/cache-$label" # as large as the snapshot
	rows+=("| $label | $apis | $subs | $seed_s s | $db_mib MiB | $snap_mib / $json_mib MiB | $fetch_s / $json_s s | $cold_ms ms | ${fetch_ms:--} / $compile_ms ms | $rss_ready / $rss_settled / $rss_end MiB | $hwm_end MiB | $mgmt_hwm MiB | $p50 / $p99 / $pmax ms | $patch50 ms | $after50 / $after99 ms | $cpu |")
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(psql_cmd 'SHOW server_version')"
[ "$ONLY" = large ] || measure small "$SMALL_APIS" "$SMALL_SUBS"
[ "$ONLY" = small ] || measure large "$LARGE_APIS" "$LARGE_SUBS"

echo
echo "| config | APIs | subscriptions | seed | database | snapshot stream / JSON | snapshot from management, stream / JSON | gateway cold start | of which fetch+load / compile | gateway RSS ready / settled / after changes | gateway peak RSS | management peak RSS | change → enforced p50 / p99 / max | of which PATCH p50 | PATCH response → enforced p50 / p99 | CPU during the cold start: gateway / management / Postgres / the rest |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "logs: $work"
