package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// browserDir holds the browser test's script and its node_modules (scripts/browser.sh).
const browserDir = "../portal/testdata/browser"

// TestPortalInBrowser drives the portal in Debian's chromium with playwright-core against this
// stack: a real gateway node advertising GATEWAY_PUBLIC_URL and a backend that wants an
// access_token. The script (portal.test.mjs) creates a WebSocket API through the form (after a
// validation error), a user and their consumer token, a subscription; breaks and fixes the
// onHandshake policy; reads the gateway's nodes; connects through the console relay and the
// node to the backend, sends and receives; sees a wrong key's 401 body; signs in as the
// consumer, who sees only their own subscription and regenerates a key; and checks a 400px
// window. Screenshots of every step go to $GATEHOUSE_ARTIFACTS/portal (default artifacts/portal
// at the repository root).
func TestPortalInBrowser(t *testing.T) {
	chromium, node := browserPrerequisites(t)
	s := newStack(t)
	be := newBackend(t, "demo", "backend-access-token")

	// The node listens on a port picked here so that its advertised URL can name it with a host
	// of its own (localhost), unlike the 127.0.0.1 a node derives from its listener.
	port := freePort(t)
	publicURL := "ws://localhost:" + port
	s.startNode(t, "portal-node", nodeOptions{env: []string{"GATEWAY_LISTEN=127.0.0.1:" + port, "GATEWAY_PUBLIC_URL=" + publicURL}})

	// What the consumer must not see: another user's subscription and one without an owner.
	s.put(t, "/users/bob", map[string]any{"email": "bob@example.com", "firstName": "Bob", "lastName": "Builder"})
	s.put(t, "/subscriptions/bob-sub", map[string]any{"scope": "/apis", "displayName": "Bob's", "state": "active", "ownerId": "/users/bob"})
	s.subscription(t, "shared-sub", "/apis", "active")

	secrets := runBrowserScript(t, s, node, "portal.test.mjs", "portal",
		"PORTAL_URL="+s.env.URL+"/portal/",
		"ADMIN_TOKEN="+s.env.Token,
		"BACKEND_URL="+be.wsURL(""),
		"BACKEND_TOKEN="+be.accessToken,
		"NODE_URL="+publicURL,
		"CHROMIUM="+chromium)
	if secrets < 6 {
		t.Fatalf("the browser test reported %d secrets, want the tokens and keys it saw", secrets)
	}
}

// runBrowserScript runs the browser test script (in browserDir) with node and env, its
// screenshots going to artifactsDir(t, artifacts), and fails t if it fails. It registers the
// secrets the script reports (its last stdout line) with the stack, checks that management
// logged none of them, and returns how many there were.
func runBrowserScript(t *testing.T, s *stack, node, script, artifacts string, env ...string) int {
	t.Helper()
	dir := artifactsDir(t, artifacts)
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = browserDir
	cmd.Env = append(append(os.Environ(), env...), "PORTAL_ARTIFACTS="+dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("screenshots: %s", dir)
	var out struct {
		Secrets []struct{ Value, What string }
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		_ = json.Unmarshal(sc.Bytes(), &out)
	}
	for _, sec := range out.Secrets {
		s.secret(sec.Value, sec.What)
	}
	if err != nil {
		t.Fatalf("the browser test %s failed: %v\n%s", script, err, stderr.String())
	}
	// The console relay and the portal API saw tokens and keys: management logs none of them
	// (the gateway node's log is checked by the stack when the test ends).
	mlog := s.env.Log.String()
	for _, sec := range out.Secrets {
		if strings.Contains(mlog, sec.Value) {
			t.Errorf("management logged %s", sec.What)
		}
	}
	return len(out.Secrets)
}

// browserPrerequisites returns chromium's and node's paths, failing the test with what to run
// when either, or playwright-core, is missing.
func browserPrerequisites(t *testing.T) (chromium, node string) {
	t.Helper()
	const fix = "run scripts/browser.sh (make test runs it through scripts/deps.sh)"
	chromium = os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("the portal's browser test needs Debian's chromium at %s: %v; %s", chromium, err, fix)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("the portal's browser test needs Node.js: %v; %s", err, fix)
	}
	if _, err := os.Stat(filepath.Join(browserDir, "node_modules", "playwright-core", "package.json")); err != nil {
		t.Fatalf("the portal's browser test needs playwright-core in %s/node_modules: %v; %s", browserDir, err, fix)
	}
	return chromium, node
}

// artifactsDir is a fresh folder for this run's screenshots: $GATEHOUSE_ARTIFACTS/<name>, or
// artifacts/<name> at the repository root (ignored by git).
func artifactsDir(t *testing.T, name string) string {
	t.Helper()
	root := os.Getenv("GATEHOUSE_ARTIFACTS")
	if root == "" {
		root = filepath.Join("..", "..", "..", "..", "artifacts")
	}
	dir, err := filepath.Abs(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// freePort returns a port on 127.0.0.1 nothing listens on right now, for a process to listen
// on: the kernel's pick from the ephemeral range, given back at once.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	return port
}
