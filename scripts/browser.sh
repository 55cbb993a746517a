#!/usr/bin/env bash
# browser.sh: make sure the portal's browser tests can run: Debian's chromium (/usr/bin/chromium),
# Node.js with npm, and playwright-core as pinned by the package-lock.json in
# services/management/internal/portal/testdata/browser (npm ci into its node_modules).
# Installs only what is missing or out of date; running it again is harmless. Playwright never
# downloads a browser of its own here: the tests drive Debian's chromium.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

DIR="$ROOT/services/management/internal/portal/testdata/browser"

[ -x /usr/bin/chromium ] || apt_install chromium
[ -x /usr/bin/chromium ] || die "/usr/bin/chromium still missing after installing Debian's chromium"
need_cmd node nodejs
need_cmd npm

npm_ci_locked "$DIR" playwright-core PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
