#!/usr/bin/env bash
# pysdk.sh: make sure the Python SDK test (services/management/internal/e2e/pysdk_test.go) can
# run: Debian's python3-azure, which brings azure-mgmt-apimanagement for Debian's /usr/bin/python3
# (the interpreter the test runs). Installs only when that interpreter cannot import the SDK;
# running it again is harmless.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

sdk_present() { /usr/bin/python3 -c 'import azure.mgmt.apimanagement' 2>/dev/null; }

sdk_present || apt_install python3-azure
sdk_present || die "/usr/bin/python3 still cannot import azure.mgmt.apimanagement after installing Debian's python3-azure"
