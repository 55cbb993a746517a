#!/usr/bin/env bash
# syscalls.sh: system calls and CPU of a proxy per relayed frame or per handshake, counted with
# perf tracepoints (root, or perf_event_paranoid ≤ -1) over 5 s in the middle of a load
# (docs/performance.md, "Event-loop library prototype (gnet v2)").
#
#   scripts/bench/syscalls.sh proto-gnet|nginx echo|handshake
#
# echo: 200 connections echoing 256-byte messages (a smaller (a)); handshake: 16 workers
# upgrading and closing ((b), unchecked). The unit (frames: two per echoed message; handshakes:
# upgrades) comes from the echo backend's counters read at both ends of the counting window.
# CPU comes from /proc over the same window: all threads, and all processes for nginx.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$ROOT"
target="${1:?usage: syscalls.sh proto-gnet|nginx echo|handshake}" mode="${2:-echo}"
need_cmd perf
work="$(mktemp -d -t gatehouse-syscalls-XXXXXX)"
go build -trimpath -o bin/benchecho ./services/gateway/cmd/benchecho
go build -trimpath -o bin/wsload ./services/gateway/cmd/wsload
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
echo_port="$(free_port)" port="$(free_port)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
bin/benchecho -listen "127.0.0.1:$echo_port" >"$work/echo.log" 2>&1 &
pids+=($!)
until curl -sf "127.0.0.1:$echo_port/healthz" >/dev/null; do sleep 0.1; done
case "$target" in
proto-gnet)
	go build -trimpath -o bin/relayproto ./services/gateway/cmd/relayproto
	bin/relayproto -listen "127.0.0.1:$port" -backend "127.0.0.1:$echo_port" 2>"$work/proxy.log" &
	pids+=($!)
	procs=$!
	;;
nginx)
	sed -e "s#@WORK@#$work#g; s#@LISTEN@#127.0.0.1:$port#; s#@BACKEND@#127.0.0.1:$echo_port#; s#@NOFILE@#$(ulimit -n)#g" \
		scripts/bench/nginx.conf >"$work/nginx.conf"
	nginx -p "$work" -c "$work/nginx.conf" -g 'daemon off;' 2>"$work/proxy.log" &
	pids+=($!)
	until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.05; done
	procs="$(pgrep -P "${pids[-1]}" | paste -sd,)" # the workers
	;;
*) die "unknown target $target" ;;
esac
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.05; done
case "$mode" in
echo) bin/wsload echo -url "ws://127.0.0.1:$port/echo" -conns 200 -size 256 -warmup 1s -duration 10s >"$work/load.out" & ;;
handshake) bin/wsload handshake -url "ws://127.0.0.1:$port/echo" -workers 16 -warmup 1s -duration 10s >"$work/load.out" & ;;
*) die "unknown mode $mode" ;;
esac
load=$!
sleep 3
events=raw_syscalls:sys_enter
for s in read write recvfrom sendto readv writev epoll_wait epoll_pwait epoll_ctl futex nanosleep sched_yield \
	socket connect accept4 close setsockopt getsockopt fcntl getsockname getpeername; do
	events="$events,syscalls:sys_enter_$s"
done
# The command perf runs is the window: the backend's counters and the CPU time are read at both of
# its ends with shell builtins only, so that little happens outside the two readings.
cat >"$work/window.sh" <<'EOF'
port="$1" out="$2"
shift 2
sample() {
	local line cpu=0 p f
	for p in "$@"; do
		read -r -a f <"/proc/$p/stat"
		cpu=$((cpu + f[13] + f[14]))
	done
	exec 3<>"/dev/tcp/127.0.0.1/$port"
	printf 'GET /stats HTTP/1.0\r\n\r\n' >&3
	while read -r line <&3; do
		case "$line" in upgrades=*) echo "$line cpu=$cpu" ;; esac
	done
	exec 3<&-
}
sample "$@" >"$out/w0"
sleep 5
sample "$@" >"$out/w1"
EOF
# shellcheck disable=SC2086 # procs is a list of process ids
perf stat -x, -e "$events" -p "$procs" -- bash "$work/window.sh" "$echo_port" "$work" ${procs//,/ } 2>"$work/perf.csv"
wait "$load"
get() { sed -nE "s/.*(^| )$1=([0-9]+).*/\2/p" "$work/$2"; }
case "$mode" in
echo) unit=frame n=$((2 * ($(get messages w1) - $(get messages w0)))) ;;
handshake) unit=handshake n=$(($(get upgrades w1) - $(get upgrades w0))) ;;
esac
ticks=$(($(get cpu w1) - $(get cpu w0)))
echo "$target $mode: $n ${unit}s in the window, CPU $(awk -v t="$ticks" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}') µs per $unit; load: $(cat "$work/load.out")"
awk -F, -v n="$n" -v u="$unit" '$1 > 0 {sub(/^syscalls:sys_enter_/, "", $3); printf "  %-22s %9d  %6.3f per %s\n", $3, $1, $1 / n, u}' "$work/perf.csv"
