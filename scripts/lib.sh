# shellcheck shell=bash
# lib.sh: helpers sourced by the other scripts in this folder. Not meant to be run.

# ROOT is the repository (workspace) root.
# shellcheck disable=SC2034 # used by the scripts that source this file
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# log prints a message on stderr, so stdout stays free for a script's one result.
log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }

# die logs a message and exits 1.
die() { log "error: $*"; exit 1; }

# as_root runs a command as root: directly when we are root, else through sudo.
as_root() {
	# 3>&-: a daemon that a package starts must not hold a caller's capture pipe open (see as_pg).
	if [ "$(id -u)" -eq 0 ]; then
		"$@" 3>&-
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@" 3>&-
	else
		die "need root to run '$*' and sudo is not installed"
	fi
}

# apt_install installs Debian packages, refreshing the package lists once if the first try fails
# (a fresh machine has no lists).
apt_install() {
	command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* by hand"
	log "installing Debian package(s): $*"
	local env=(env DEBIAN_FRONTEND=noninteractive)
	if ! as_root "${env[@]}" apt-get install -y -q --no-install-recommends "$@" >&2; then
		as_root "${env[@]}" apt-get update -q >&2
		as_root "${env[@]}" apt-get install -y -q --no-install-recommends "$@" >&2
	fi
}

# need_cmd makes sure command $1 exists, installing Debian package $2 (default: $1) if not.
need_cmd() {
	command -v "$1" >/dev/null 2>&1 && return 0
	apt_install "${2:-$1}"
	command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing ${2:-$1}"
}

# as_pg runs a command as the owner of the private Postgres cluster: the postgres system user when
# we are root (initdb and postgres refuse to run as root), else ourselves. It runs from / so the
# postgres user never needs access to the caller's working directory. It closes fd 3 because
# postgres.sh keeps its real stdout there, and a server started by pg_ctl inherits every open fd:
# holding the pipe of a caller's $(scripts/postgres.sh) open would make that caller wait forever.
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		if command -v runuser >/dev/null 2>&1; then
			(cd / && runuser -u postgres -- "$@") 3>&-
		else
			# shellcheck disable=SC2016 # expanded by the inner shell
			(cd / && su postgres -s /bin/sh -c '"$0" "$@"' "$@") 3>&-
		fi
	else
		(cd / && "$@") 3>&-
	fi
}

# arm_request BASE TOKEN METHOD PATH [BODY]: one call of management's ARM API (api-version
# 2024-05-01) at BASE+PATH with the admin TOKEN; prints the answer's body and fails on a non-2xx.
arm_request() {
	local base="$1" token="$2" method="$3" path="$4" body="${5:-}" out code
	out="$(mktemp)"
	code="$(curl -k -s -o "$out" -w '%{http_code}' -X "$method" -H "Authorization: Bearer $token" \
		-H 'Content-Type: application/json' ${body:+-d "$body"} "$base$path?api-version=2024-05-01")"
	if [ "${code:0:1}" != 2 ]; then
		log "$method $path answered $code: $(cat "$out")"
		rm -f "$out"
		return 1
	fi
	cat "$out"
	rm -f "$out"
}

# json_field NAME prints the first string value of "NAME" in the JSON read from stdin.
json_field() { sed -nE "s/.*\"$1\" *: *\"([^\"]*)\".*/\1/p" | head -1; }

# npm_ci_locked DIR PACKAGE [ENV...]: make sure DIR/node_modules holds PACKAGE at the version
# DIR/package-lock.json pins, running npm ci in DIR (with the settings ENV, NAME=VALUE) when it
# does not. Needs node and npm.
npm_ci_locked() {
	local dir="$1" pkg="$2"
	shift 2
	if ! lock_matches "$dir" "$pkg"; then
		log "installing $pkg with npm ci in ${dir#"$ROOT"/}"
		(cd "$dir" && env "$@" npm ci --no-audit --no-fund --loglevel=error) >&2
		lock_matches "$dir" "$pkg" || die "$pkg in ${dir#"$ROOT"/}/node_modules does not match package-lock.json after npm ci"
	fi
}

# lock_matches DIR PACKAGE succeeds when DIR/node_modules holds the PACKAGE version the lock pins.
lock_matches() {
	(cd "$1" && PKG="$2" node -e '
		const fs = require("fs");
		const pkg = process.env.PKG;
		const want = JSON.parse(fs.readFileSync("package-lock.json", "utf8")).packages["node_modules/" + pkg].version;
		const have = JSON.parse(fs.readFileSync("node_modules/" + pkg + "/package.json", "utf8")).version;
		process.exit(want === have ? 0 : 1);
	' 2>/dev/null)
}
