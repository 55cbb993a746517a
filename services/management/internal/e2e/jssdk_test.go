package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// jssdkDir holds the JavaScript SDK test's script and its node_modules (scripts/jssdk.sh).
const jssdkDir = "testdata/jssdk"

// sdkResult is the last line an SDK template script prints.
type sdkResult struct {
	PrimaryKey string
	Calls      int
	Secrets    []struct{ Value, What string }
}

// TestJSSDKTemplate applies a WebSocket-API template with a client nobody here wrote, the Azure
// SDK for JavaScript (@azure/arm-apimanagement 10, from npm; issue 15): template.mjs creates a
// secret named value, a backend, a policy fragment reading it, a Segment version set, a
// versioned WebSocket API whose onHandshake policy includes the fragment and routes to the
// backend, a product with the API, a subscription, a tag on the API and the product with a
// tag description, an otlp logger with a service and an API diagnostic, revision 2 of the API
// with its own policy and a release making it current, the gateway with its API link, the
// portal settings and an identity provider, and reads every one back, failing on any SDK
// error. A real node then enforces it (revisionedTemplate.enforce).
func TestJSSDKTemplate(t *testing.T) {
	node := jssdkPrerequisites(t)
	col := newOTLPCollector(t)
	s, res := applyTemplate(t, jssdkDir, []string{node, "template.mjs"}, "4f1e3c2a-6b7d-4e8f-9a0b-1c2d3e4f5a6b", "js-live", 62,
		"COLLECTOR_URL="+col.srv.URL)
	revisionedTemplate{key: res.PrimaryKey, tenant: "contoso-js", backend: "js-live", collector: col}.
		enforce(t, s.startNode(t, "jssdk", nodeOptions{}))
}

// checkTemplateServed starts a node and checks that it serves the template's API at /chat/v1:
// a handshake with key but without the X-Tenant header is refused by the tenant check, one with
// key and tenant reaches backend, and one without the key is APIM's 401.
func checkTemplateServed(t *testing.T, s *stack, nodeName, key, tenant, backend string) {
	t.Helper()
	n := s.startNode(t, nodeName, nodeOptions{})
	eventually(t, propagation, func() string {
		status, _, body := handshake(t, n.ws("/chat/v1"), keyHeader(key))
		if status != http.StatusForbidden {
			return "a handshake without X-Tenant answered " + http.StatusText(status) + ": " + body
		}
		return wantContains(body, "Unknown tenant")
	})
	h := keyHeader(key)
	h.Set("X-Tenant", tenant)
	conn, hi := connect(t, n.ws("/chat/v1"), h)
	defer conn.Close()
	if hi.Backend != backend {
		t.Errorf("the session reached backend %q, want %s", hi.Backend, backend)
	}
	status, header, body := handshake(t, n.ws("/chat/v1"), http.Header{"X-Tenant": {tenant}})
	wantGatewayError(t, status, header, body, http.StatusUnauthorized,
		"Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.")
}

// applyTemplate starts a stack with its service in the ARM subscription sub and a backend named
// backend, runs the template script argv in dir against them with env added (runSDKScript), and
// fails t unless the script reported a subscription key and at least minCalls SDK calls.
func applyTemplate(t *testing.T, dir string, argv []string, sub, backend string, minCalls int, env ...string) (*stack, sdkResult) {
	t.Helper()
	s := newStackIn(t, sub)
	be := newBackend(t, backend, "")
	env = append([]string{"MANAGEMENT_URL=" + s.env.URL, "ADMIN_TOKEN=" + s.env.Token, "ARM_SUBSCRIPTION=" + sub,
		"RESOURCE_GROUP=rg-e2e", "SERVICE=svc", "GATEWAY=gw", "BACKEND_URL=" + be.wsURL("/")}, env...)
	res := runSDKScript(t, s, dir, argv, env...)
	if res.PrimaryKey == "" || res.Calls < minCalls {
		t.Fatalf("the script reported key %t and %d SDK calls, want a key and the whole template", res.PrimaryKey != "", res.Calls)
	}
	return s, res
}

// runSDKScript runs the command argv in dir with env and fails t if it fails. It registers the
// secrets the script reports (its last stdout line) with the stack, checks that management
// logged none of them, and returns what the script reported.
func runSDKScript(t *testing.T, s *stack, dir string, argv []string, env ...string) sdkResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnviron(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var res sdkResult
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		_ = json.Unmarshal(sc.Bytes(), &res)
	}
	for _, sec := range res.Secrets {
		s.secret(sec.Value, sec.What)
	}
	if err != nil {
		t.Fatalf("%s failed: %v\n%s", strings.Join(argv, " "), err, stderr.String())
	}
	mlog := s.env.Log.String()
	for _, sec := range res.Secrets {
		if bytes.Contains([]byte(mlog), []byte(sec.Value)) {
			t.Errorf("management logged %s", sec.What)
		}
	}
	return res
}

// jssdkPrerequisites returns node's path, failing the test with what to run when it, or the
// SDK in jssdkDir/node_modules, is missing.
func jssdkPrerequisites(t *testing.T) string {
	t.Helper()
	const fix = "run scripts/jssdk.sh (make test runs it through scripts/deps.sh)"
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("the JavaScript SDK test needs Node.js: %v; %s", err, fix)
	}
	if _, err := os.Stat(filepath.Join(jssdkDir, "node_modules", "@azure", "arm-apimanagement", "package.json")); err != nil {
		t.Fatalf("the JavaScript SDK test needs @azure/arm-apimanagement in %s/node_modules: %v; %s", jssdkDir, err, fix)
	}
	return node
}
