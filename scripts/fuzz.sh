#!/usr/bin/env bash
# fuzz.sh: run every Fuzz* target in the workspace for FUZZTIME each (default 30s), one after
# another, since go test fuzzes one target of one package at a time. New failing inputs land in
# the package's testdata/fuzz folder, where plain go test replays them. Exits non-zero if any
# target failed, after running them all.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

FUZZTIME="${FUZZTIME:-30s}"

# go test -list prints a package's matching names, then its "ok  <import path>" line. A package
# that does not build is reported and counted as a failure; the others are still fuzzed.
failed=()
if ! listing="$(go test -list '^Fuzz' work)"; then
	printf '%s\n' "$listing" | grep -v -E '^(Fuzz|ok|\?)' >&2 || true
	log "some packages could not be listed; fuzzing the rest"
	failed+=("go test -list")
fi
targets=() # "import/path FuzzName"
names=()
while IFS= read -r line; do
	case "$line" in
	Fuzz*) names+=("$line") ;;
	ok*)
		pkg="$(awk '{print $2}' <<<"$line")"
		for name in "${names[@]}"; do targets+=("$pkg $name"); done
		names=()
		;;
	FAIL* | \?*) names=() ;; # a package that failed or has no tests
	esac
done <<<"$listing"

if [ "${#targets[@]}" -eq 0 ]; then
	log "no Fuzz targets found"
fi

for target in "${targets[@]}"; do
	read -r pkg name <<<"$target"
	log "fuzzing $pkg $name for $FUZZTIME"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg"; then
		failed+=("$target")
	fi
done

log "${#targets[@]} fuzz targets run; ${#failed[@]} failure(s)"
if [ "${#failed[@]}" -gt 0 ]; then
	printf '  failed: %s\n' "${failed[@]}" >&2
	exit 1
fi
