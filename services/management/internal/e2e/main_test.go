package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// gatewayBinary is the gateway built by TestMain; every node of every test runs it.
var gatewayBinary string

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "gatehouse-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	gatewayBinary = filepath.Join(dir, "gateway")
	args := []string{"build", "-o", gatewayBinary}
	if raceEnabled {
		args = append(args, "-race")
	}
	// The go command puts its own GOROOT/bin first on the PATH of test binaries; the build
	// resolves gatehouse.dev/gateway through the go.work workspace.
	out, err := exec.Command("go", append(args, "gatehouse.dev/gateway/cmd/gateway")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the gateway: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}
