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

# installed_matches succeeds when node_modules holds the playwright-core version the lock pins.
installed_matches() {
	(cd "$DIR" && node -e '
		const fs = require("fs");
		const want = JSON.parse(fs.readFileSync("package-lock.json", "utf8")).packages["node_modules/playwright-core"].version;
		const have = JSON.parse(fs.readFileSync("node_modules/playwright-core/package.json", "utf8")).version;
		process.exit(want === have ? 0 : 1);
	' 2>/dev/null)
}

if ! installed_matches; then
	log "installing playwright-core with npm ci in ${DIR#"$ROOT"/}"
	(cd "$DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) >&2
	installed_matches || die "playwright-core in ${DIR#"$ROOT"/}/node_modules does not match package-lock.json after npm ci"
fi
