#!/usr/bin/env bash
# jssdk.sh: make sure the JavaScript SDK test (services/management/internal/e2e/jssdk_test.go)
# can run: Node.js with npm, and @azure/arm-apimanagement as pinned by the package-lock.json in
# services/management/internal/e2e/testdata/jssdk (npm ci into its node_modules). Installs only
# what is missing or out of date; running it again is harmless.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

DIR="$ROOT/services/management/internal/e2e/testdata/jssdk"

need_cmd node nodejs
need_cmd npm
npm_ci_locked "$DIR" @azure/arm-apimanagement
