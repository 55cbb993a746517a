#!/usr/bin/env bash
# bench-management.sh: benchmark the management service. Runs the Go benchmarks of the
# management module (BENCH selects them, default all; BENCHTIME each, default 5s) against the
# database in DATABASE_URL (make bench-management passes one in).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

go test -run '^$' -bench "${BENCH:-.}" -benchmem -benchtime "${BENCHTIME:-5s}" ./services/management/...
