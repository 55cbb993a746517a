package api_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"gatehouse.dev/management/internal/mgmttest"
)

// TestAttackImportLinkEchoesNoInternalContent imports from a link to an internal endpoint the
// default egress policy reaches (a loopback listener answering with a non-description, as an
// admin or monitoring endpoint does): the refusal names the link, never the content fetched.
func TestAttackImportLinkEchoesNoInternalContent(t *testing.T) {
	t.Parallel()
	const secret = "internal-secret-7f3a9c"
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics":
			io.WriteString(w, "# HELP x\n"+secret+"_total{a=\"b\"} 1\n")
		case "/yaml":
			io.WriteString(w, "token: ["+secret+"\n")
		case "/json":
			io.WriteString(w, `{"openapi": "3.0.0", "info": {"title": 5, "version": "`+secret+`"}, "paths": {"`+secret+`": 7}}`)
		case "/swagger":
			io.WriteString(w, `{"swagger": "2.0", "info": "`+secret+`"}`)
		case "/version":
			io.WriteString(w, `{"openapi": "`+secret+`"}`)
		}
	}))
	t.Cleanup(internal.Close)
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "import-leak")
	for _, tc := range []struct{ format, path string }{
		{"openapi-link", "/metrics"}, {"openapi-link", "/yaml"}, {"openapi+json-link", "/json"},
		{"swagger-link-json", "/swagger"}, {"openapi+json-link", "/version"},
	} {
		t.Run(tc.format+tc.path, func(t *testing.T) {
			r := c.do(http.MethodPut, "/apis/leak", map[string]any{"properties": importAPI("leak", tc.format, internal.URL+tc.path)})
			if r.Status != http.StatusBadRequest {
				t.Fatalf("import of %s answered %d, want 400: %s", tc.path, r.Status, r.Body)
			}
			if strings.Contains(string(r.Body), secret) {
				t.Errorf("the refusal of %s echoes the fetched content: %s", tc.path, r.Body)
			}
		})
	}
}

// TestAttackImportLinkTokenNotLogged imports from links whose query carries a token, as a
// blob's SAS link or a Gatehouse export link does, where the fetch fails: management's log
// names the link without its query.
func TestAttackImportLinkTokenNotLogged(t *testing.T) {
	t.Parallel()
	const sig = "sig-5b1e0d77c4"
	closed := httptest.NewServer(http.NotFoundHandler())
	dead := closed.URL
	closed.Close()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "import-log")
	for _, link := range []string{dead + "/petstore.json?sv=2020&sig=" + sig, dead + "/x#sig=" + sig} {
		r := c.do(http.MethodPut, "/apis/sas", map[string]any{"properties": importAPI("sas", "openapi+json-link", link)})
		if r.Status != http.StatusBadRequest {
			t.Fatalf("import from a closed port answered %d, want 400: %s", r.Status, r.Body)
		}
	}
	if !strings.Contains(env.Log.String(), "import link fetch failed") {
		t.Fatalf("no log line of the failed fetch: %s", env.Log.String())
	}
	if strings.Contains(env.Log.String(), sig) {
		t.Errorf("management's log holds the link's token: %s", env.Log.String())
	}
}

// TestAttackImportLinkOwnListeners: an import link pointing at management itself, its admin
// listener (metrics) or its API, is refused by the dialer whatever the egress policy allows,
// as a gateway node refuses its own listeners.
func TestAttackImportLinkOwnListeners(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "import-self")
	for _, link := range []string{env.AdminURL + "/metrics", env.URL + "/healthz"} {
		r := c.do(http.MethodPut, "/apis/self", map[string]any{"properties": importAPI("self", "openapi-link", link)})
		if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "egress policy") {
			t.Errorf("import from %s answered %d %s, want 400 naming the egress policy", link, r.Status, r.Body)
		}
	}
}
