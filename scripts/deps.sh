#!/usr/bin/env bash
# deps.sh: make sure the tests' needs beyond Go are present: openssl, a C compiler, because
# go test -race needs cgo and Go turns cgo off when it finds none (Debian's gcc, if missing), and
# the portal's browser tests' chromium and playwright-core (scripts/browser.sh), and the Azure SDK
# for JavaScript and Python the e2e template tests drive (scripts/jssdk.sh, scripts/pysdk.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if ! command -v "$(go env CC 2>/dev/null || echo gcc)" >/dev/null 2>&1; then
	apt_install gcc libc6-dev
fi
# openssl s_server is the renegotiating TLS 1.2 backend of wsproxy's TestTLSBackendRenegotiation.
command -v openssl >/dev/null 2>&1 || apt_install openssl

"$(dirname "$0")/browser.sh"
"$(dirname "$0")/jssdk.sh"
"$(dirname "$0")/pysdk.sh"
