package deployments_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestReadmeQuickstart runs the README's quickstart block against a fresh scripts/run.sh, as a
// reader would paste it after `make run`, and requires it to end in a WebSocket echo through a
// gateway node (scripts/quickstart-check.sh does the work).
func TestReadmeQuickstart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot, "scripts", "quickstart-check.sh"))
	// On timeout the script gets SIGTERM, so that its trap stops run.sh and drops its database;
	// run.sh gives its children 15 s to stop.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/quickstart-check.sh: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
