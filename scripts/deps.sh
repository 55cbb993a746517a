#!/usr/bin/env bash
# deps.sh: make sure the tests' one need beyond Go is present: a C compiler, because
# go test -race needs cgo and Go turns cgo off when it finds none. Installs Debian's gcc if missing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if ! command -v "$(go env CC 2>/dev/null || echo gcc)" >/dev/null 2>&1; then
	apt_install gcc libc6-dev
fi
