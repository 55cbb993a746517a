package compiled

import (
	"net/http"
	"net/url"
	"testing"

	"gatehouse.dev/pkg/configwire"
)

// versionedSnapshot serves three version sets, one per scheme, each with an Original and two
// versions, and the API chat with revision 2 beside the current revision 1.
func versionedSnapshot() configwire.Snapshot {
	snap := configwire.Snapshot{ServiceID: testServiceID, Service: "svc", Gateway: "gw", Revision: testRevision}
	add := func(es ...configwire.Entity) { snap.Entities = append(snap.Entities, es...) }
	add(ent(configwire.KindGateway, "", "gw", obj{}))
	for _, set := range []struct{ name, scheme, q, h string }{{"seg", "Segment", "", ""}, {"qry", "Query", "api-version", ""}, {"hdr", "Header", "", "Api-Version"}} {
		add(ent(configwire.KindAPIVersionSet, "", set.name, obj{"displayName": set.name, "versioningScheme": set.scheme,
			"versionQueryName": set.q, "versionHeaderName": set.h}))
		for _, v := range []string{"", "v1", "v2"} {
			name := set.name + "-" + v
			if v == "" {
				name = set.name + "-original"
			}
			add(apiEnt(name, set.name, "websocket", obj{"apiVersion": v, "apiVersionSetId": svcARM + "/apiVersionSets/" + set.name}),
				opEnt(name, "onHandshake", "GET", "/"), link(configwire.KindGatewayAPI, "gateways/gw", name))
		}
	}
	add(apiEnt("chat", "chat", "websocket", obj{"apiRevision": "1", "isCurrent": true}), opEnt("chat", "onHandshake", "GET", "/"),
		apiEnt("chat;rev=2", "chat", "websocket", obj{"apiRevision": "2", "isCurrent": false}), opEnt("chat;rev=2", "onHandshake", "GET", "/"),
		link(configwire.KindGatewayAPI, "gateways/gw", "chat"),
		apiEnt("shop", "shop", "http", obj{"apiRevision": "3"}), opEnt("shop", "all", "GET", "/*"),
		apiEnt("shop;rev=4", "shop", "http", obj{"apiRevision": "4", "isCurrent": false}), opEnt("shop;rev=4", "all", "GET", "/*"),
		link(configwire.KindGatewayAPI, "gateways/gw", "shop"))
	return snap
}

// versionRequest is a request for target (a path and query) with the headers h (name, value…).
func versionRequest(target string, h ...string) *http.Request {
	u, err := url.Parse(target)
	if err != nil {
		panic(err)
	}
	r := &http.Request{URL: u, Header: http.Header{}}
	for i := 0; i+1 < len(h); i += 2 {
		r.Header.Set(h[i], h[i+1])
	}
	return r
}

func TestVersionRouting(t *testing.T) {
	t.Parallel()
	_, cfg := load(t, versionedSnapshot())
	for _, tc := range []struct {
		name string
		req  *http.Request
		want string
	}{
		{"segment v2", versionRequest("/seg/v2"), "seg-v2"},
		{"segment v1, any case", versionRequest("/SEG/V1"), "seg-v1"},
		{"segment original", versionRequest("/seg"), "seg-original"},
		{"segment unknown version", versionRequest("/seg/v9"), ""},
		{"query v2", versionRequest("/qry?api-version=v2"), "qry-v2"},
		{"query v1 beside other parameters", versionRequest("/qry?x=1&api-version=v1"), "qry-v1"},
		{"query original", versionRequest("/qry"), "qry-original"},
		{"query unknown version", versionRequest("/qry?api-version=v9"), ""},
		{"query name in the header", versionRequest("/qry", "api-version", "v2"), "qry-original"},
		{"header v2", versionRequest("/hdr", "Api-Version", "v2"), "hdr-v2"},
		{"header original", versionRequest("/hdr"), "hdr-original"},
		{"header unknown version", versionRequest("/hdr", "Api-Version", "v9"), ""},
		{"current revision", versionRequest("/chat"), "chat"},
		{"current revision by number", versionRequest("/chat;rev=1"), "chat"},
		{"revision 2", versionRequest("/chat;rev=2"), "chat;rev=2"},
		{"unknown revision", versionRequest("/chat;rev=3"), ""},
	} {
		if got := apiName(cfg.LookupWebSocket(tc.req)); got != tc.want {
			t.Errorf("%s: LookupWebSocket(%s) = %q, want %q", tc.name, tc.req.URL, got, tc.want)
		}
	}
	for _, tc := range []struct{ path, want, rest string }{
		{"/shop/items/1", "shop", "items/1"},
		{"/shop;rev=3/items", "shop", "items"},
		{"/shop;rev=4/items", "shop;rev=4", "items"},
		{"/shop;rev=5/items", "", ""},
	} {
		a, rest := cfg.LookupHTTP(request(tc.path))
		if apiName(a) != tc.want || rest != tc.rest {
			t.Errorf("LookupHTTP(%s) = %q, %q; want %q, %q", tc.path, apiName(a), rest, tc.want, tc.rest)
		}
	}
	if a := cfg.APIByName("chat;rev=1"); apiName(a) != "chat" {
		t.Errorf("APIByName(chat;rev=1) = %q, want the current revision chat", apiName(a))
	}
}

func TestVersionChanges(t *testing.T) {
	t.Parallel()
	b, _ := load(t, versionedSnapshot())
	// The Query set becomes a Header set: its APIs answer by the header now.
	cfg, err := b.Apply(change(testRevision+1, put(ent(configwire.KindAPIVersionSet, "", "qry", obj{"displayName": "qry",
		"versioningScheme": "Header", "versionHeaderName": "X-Version"}))))
	if err != nil {
		t.Fatal(err)
	}
	if got := apiName(cfg.LookupWebSocket(versionRequest("/qry?api-version=v2"))); got != "qry-original" {
		t.Errorf("after the scheme change ?api-version=v2 reaches %q, want the Original", got)
	}
	if got := apiName(cfg.LookupWebSocket(versionRequest("/qry", "X-Version", "v2"))); got != "qry-v2" {
		t.Errorf("after the scheme change X-Version: v2 reaches %q, want qry-v2", got)
	}
	// Revision 2 of chat becomes current as management sends it: the API chat with revision 2's
	// properties, the API chat;rev=1, and chat;rev=2 deleted, in one change.
	chat := cfg.APIByName("chat")
	cfg, err = b.Apply(change(testRevision+2,
		del(configwire.KindOperation, "apis/chat", "onHandshake"), del(configwire.KindOperation, "apis/chat;rev=2", "onHandshake"),
		del(configwire.KindAPI, "", "chat;rev=2"),
		put(apiEnt("chat;rev=1", "chat", "websocket", obj{"apiRevision": "1", "isCurrent": false})),
		put(apiEnt("chat", "chat", "websocket", obj{"apiRevision": "2", "isCurrent": true})),
		put(opEnt("chat;rev=1", "onHandshake", "GET", "/")), put(opEnt("chat", "onHandshake", "GET", "/"))))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"/chat": "chat", "/chat;rev=2": "chat", "/chat;rev=1": "chat;rev=1"} {
		if got := apiName(cfg.LookupWebSocket(request(path))); got != want {
			t.Errorf("after the switch %s reaches %q, want %q", path, got, want)
		}
	}
	if a := cfg.APIByName("chat"); a == chat || a.Revision != "2" {
		t.Errorf("after the switch chat is revision %s", a.Revision)
	}
	if a := cfg.APIByName("chat;rev=2"); a == nil || a.Revision != "2" {
		t.Errorf("after the switch a session on chat;rev=2 finds %v, want the current revision 2", a)
	}
	// A version set this node does not know fails the API closed.
	cfg, err = b.Apply(change(testRevision+3, put(apiEnt("seg-v2", "seg", "websocket", obj{"apiVersion": "v2",
		"apiVersionSetId": svcARM + "/apiVersionSets/gone"}))))
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.APIByName("seg-v2"); a == nil || len(a.Failures) == 0 {
		t.Errorf("an API of an unknown version set has no failure: %+v", a)
	}
	if got := apiName(cfg.LookupWebSocket(request("/seg"))); got != "seg-original" {
		t.Errorf("/seg reaches %q, want seg-original still", got)
	}
}

// TestVersionSeparatorInPath requests the internal separator of a Query or Header version
// (a NUL, sent as %00) in the path: it names no API, so it reaches no version the request
// does not name by its query parameter or header.
func TestVersionSeparatorInPath(t *testing.T) {
	t.Parallel()
	_, cfg := load(t, versionedSnapshot())
	for _, p := range []string{"/qry%00v2", "/hdr%00v2", "/qry%00v2?api-version=v1"} {
		if got := apiName(cfg.LookupWebSocket(versionRequest(p))); got != "" {
			t.Errorf("LookupWebSocket(%s) = %q, want none", p, got)
		}
		if a, _ := cfg.LookupHTTP(versionRequest(p + "/x")); a != nil {
			t.Errorf("LookupHTTP(%s/x) = %q, want none", p, a.Name)
		}
	}
}
