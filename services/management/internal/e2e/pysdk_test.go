package e2e

import (
	"os/exec"
	"testing"
)

// pysdkDir holds the Python SDK test's script.
const pysdkDir = "testdata/pysdk"

// debianPython is Debian's interpreter, the one python3-azure installs the SDK for (a python3
// earlier on the PATH, pyenv's for one, does not see Debian's dist-packages).
const debianPython = "/usr/bin/python3"

// TestPySDKTemplate applies a WebSocket-API template with a second client nobody here wrote,
// the Azure SDK for Python (azure-mgmt-apimanagement 3.1.0b1 from Debian's python3-azure,
// api-version 2021-08-01; issue 15): template.py creates a secret named value, a backend, a
// Segment version set, a versioned WebSocket API whose onHandshake policy checks the tenant
// against the named value and routes to the backend, a second revision with its own policy and
// a release making it current, a tag on the API, an Application Insights logger with service and
// API diagnostics, a product with the API, a subscription, the gateway with its API link and an
// identity provider, and reads every one back, failing on any SDK error. A real node then serves
// revision 2 at /chat/v1: the check refuses a handshake without the tenant header, and the
// subscription key the SDK read with list_secrets opens a session.
func TestPySDKTemplate(t *testing.T) {
	pysdkPrerequisites(t)
	s, res := applyTemplate(t, pysdkDir, []string{debianPython, "template.py"}, "5a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d", "py-live", 43)
	checkTemplateServed(t, s, "pysdk", res.PrimaryKey, "contoso-py", "py-live")
}

// pysdkPrerequisites fails the test with what to run when Debian's python3 cannot import the
// SDK.
func pysdkPrerequisites(t *testing.T) {
	t.Helper()
	out, err := exec.Command(debianPython, "-c", "import azure.mgmt.apimanagement").CombinedOutput()
	if err != nil {
		t.Fatalf("the Python SDK test needs azure-mgmt-apimanagement for %s: %v\n%s; run scripts/pysdk.sh (make test runs it through scripts/deps.sh)",
			debianPython, err, out)
	}
}
