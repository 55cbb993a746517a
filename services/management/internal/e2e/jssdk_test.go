package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// jssdkDir holds the JavaScript SDK test's script and its node_modules (scripts/jssdk.sh).
const jssdkDir = "testdata/jssdk"

// jssdkResult is the last line the script prints.
type jssdkResult struct {
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
	const sub = "4f1e3c2a-6b7d-4e8f-9a0b-1c2d3e4f5a6b"
	s := newStackIn(t, sub)
	be := newBackend(t, "js-live", "")
	col := newOTLPCollector(t)

	res := runJSSDK(t, s, node, "template.mjs",
		"MANAGEMENT_URL="+s.env.URL,
		"ADMIN_TOKEN="+s.env.Token,
		"ARM_SUBSCRIPTION="+sub, "RESOURCE_GROUP=rg-e2e", "SERVICE=svc", "GATEWAY=gw",
		"BACKEND_URL="+be.wsURL("/"), "COLLECTOR_URL="+col.srv.URL)
	if res.PrimaryKey == "" || res.Calls < 62 {
		t.Fatalf("the script reported key %t and %d SDK calls, want a key and the whole template", res.PrimaryKey != "", res.Calls)
	}
	revisionedTemplate{key: res.PrimaryKey, tenant: "contoso-js", backend: be.name, collector: col}.
		enforce(t, s.startNode(t, "jssdk", nodeOptions{}))
}

// runJSSDK runs script (in jssdkDir) with node and env and fails t if it fails. It registers
// the secrets the script reports (its last stdout line) with the stack, checks that management
// logged none of them, and returns what the script reported.
func runJSSDK(t *testing.T, s *stack, node, script string, env ...string) jssdkResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = jssdkDir
	cmd.Env = append(cleanEnviron(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var res jssdkResult
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		_ = json.Unmarshal(sc.Bytes(), &res)
	}
	for _, sec := range res.Secrets {
		s.secret(sec.Value, sec.What)
	}
	if err != nil {
		t.Fatalf("node %s failed: %v\n%s", script, err, stderr.String())
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
