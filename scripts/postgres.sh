#!/usr/bin/env bash
# postgres.sh: find or start a Postgres that Gatehouse can use and print its URL.
#
# Prints exactly one line on stdout, the DATABASE_URL; everything else goes to stderr. In order:
#   1. $DATABASE_URL, if set and it answers;
#   2. the server at $GATEHOUSE_PG_PORT_PROBE (default 127.0.0.1:5432), if it lets user postgres
#      in without a password (trust auth, as on a developer machine or CI);
#   3. a private cluster in $GATEHOUSE_PG_DATA (default .data/postgres), created with initdb
#      (trust auth) on first use and started if stopped, listening on 127.0.0.1:$GATEHOUSE_PG_PORT
#      (default 55432) with its unix socket in .data/postgres-socket. scripts/postgres-stop.sh
#      stops it.
# Debian's postgresql package is installed (apt-get; sudo when not root) when the Postgres
# programs are missing. initdb refuses to run as root, so as root the cluster belongs to the
# postgres system user. Running the script again is harmless.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# Keep stdout for the URL alone: fd 3 is the real stdout, everything else goes to stderr.
exec 3>&1 1>&2

PROBE="${GATEHOUSE_PG_PORT_PROBE:-127.0.0.1:5432}"
LOCAL_PORT="${GATEHOUSE_PG_PORT:-55432}"
DATA="${GATEHOUSE_PG_DATA:-$ROOT/.data/postgres}"
SOCKET_DIR="$(dirname "$DATA")/postgres-socket"
LOGFILE="$(dirname "$DATA")/postgres.log"
LOCAL_URL="postgres://postgres@127.0.0.1:${LOCAL_PORT}/postgres?sslmode=disable"

PG_BIN="" # folder holding initdb, pg_ctl and psql, set by find_pg_bin

# find_pg_bin sets PG_BIN to the newest /usr/lib/postgresql/*/bin (Debian's layout), or to the
# folder of an initdb on PATH, and fails if neither has initdb, pg_ctl and psql.
find_pg_bin() {
	local dir
	for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r) \
		"$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")"; do
		if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/psql" ]; then
			PG_BIN="$dir"
			return 0
		fi
	done
	return 1
}

# ensure_pg_bin sets PG_BIN, installing Debian's postgresql package first if needed.
ensure_pg_bin() {
	[ -n "$PG_BIN" ] && return 0
	find_pg_bin && return 0
	log "Postgres programs not found"
	apt_install postgresql
	find_pg_bin || die "installed postgresql but found no initdb/pg_ctl/psql under /usr/lib/postgresql/*/bin"
}

# answers reports whether a Postgres at URL $1 accepts a query without asking for a password.
answers() {
	local psql
	psql="$(command -v psql || true)"
	if [ -z "$psql" ]; then
		ensure_pg_bin
		psql="$PG_BIN/psql"
	fi
	[ "$(PGCONNECT_TIMEOUT=3 "$psql" -w -X -A -t -q -d "$1" -c 'SELECT 1' 2>/dev/null)" = 1 ]
}

# prepare_dirs creates the data, socket and log locations, owned by the cluster's user.
prepare_dirs() {
	mkdir -p "$DATA" "$SOCKET_DIR"
	touch "$LOGFILE"
	if [ "$(id -u)" -eq 0 ]; then
		if ! id postgres >/dev/null 2>&1; then
			log "creating the postgres system user"
			useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
		fi
		chown postgres: "$DATA" "$SOCKET_DIR" "$LOGFILE"
		if ! as_pg test -w "$DATA"; then
			die "user postgres cannot reach $DATA (a parent folder is closed to it); set GATEHOUSE_PG_DATA to a folder it can use, e.g. /var/tmp/gatehouse/postgres"
		fi
	fi
	chmod 700 "$DATA"
}

# start_local makes sure the private cluster exists and runs.
start_local() {
	ensure_pg_bin
	prepare_dirs

	if [ ! -f "$DATA/PG_VERSION" ]; then
		if [ -n "$(ls -A "$DATA")" ]; then
			die "$DATA is not empty but holds no Postgres cluster; remove it and retry"
		fi
		log "creating a Postgres cluster in $DATA"
		as_pg "$PG_BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C >&2
	else
		# A cluster must be run by the major version that created it.
		local want
		want="$(cat "$DATA/PG_VERSION")"
		if [ -x "/usr/lib/postgresql/$want/bin/pg_ctl" ]; then
			PG_BIN="/usr/lib/postgresql/$want/bin"
		elif [ "$("$PG_BIN/pg_ctl" --version | awk '{print $3}' | cut -d. -f1)" != "$want" ]; then
			die "$DATA was made by Postgres $want, which is not installed; remove $DATA to start afresh"
		fi
	fi

	if as_pg "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
		log "Postgres cluster in $DATA is already running"
	else
		log "starting Postgres on 127.0.0.1:$LOCAL_PORT (log: $LOGFILE)"
		if ! as_pg "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t 60 \
			-o "-c listen_addresses=127.0.0.1 -c port=$LOCAL_PORT -c unix_socket_directories='$SOCKET_DIR'" \
			start >&2; then
			tail -n 20 "$LOGFILE" >&2 || true
			die "Postgres did not start (is port $LOCAL_PORT taken? set GATEHOUSE_PG_PORT)"
		fi
	fi

	answers "$LOCAL_URL" || die "the cluster in $DATA runs but $LOCAL_URL does not answer (started with another port? run scripts/postgres-stop.sh and retry)"
}

main() {
	if [ -n "${DATABASE_URL:-}" ]; then
		if answers "$DATABASE_URL"; then
			log "using DATABASE_URL"
			echo "$DATABASE_URL" >&3
			return 0
		fi
		log "DATABASE_URL is set but does not answer; looking further"
	fi

	local shared="postgres://postgres@${PROBE}/postgres?sslmode=disable"
	if answers "$shared"; then
		log "using the Postgres at $PROBE"
		echo "$shared" >&3
		return 0
	fi
	log "no trust-auth Postgres at $PROBE; using a private cluster in $DATA"

	start_local
	echo "$LOCAL_URL" >&3
}

main "$@"
