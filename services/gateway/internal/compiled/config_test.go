package compiled

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/pkg/configwire"
)

func TestLookupWebSocket(t *testing.T) {
	t.Parallel()
	_, cfg := load(t, testSnapshot())
	tests := []struct {
		path string
		want string // API name, "" = none
	}{
		{"/chat", "chat"},
		{"chat", "chat"},
		{"/chat/", "chat"},
		{"/CHAT", "chat"},
		{"/chat/extra", ""},
		{"/cha", ""},
		{"/", ""},
		{"/other", ""},       // linked to another gateway only
		{"/shop/orders", ""}, // an HTTP API
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			if got := apiName(cfg.LookupWebSocket(request(tc.path))); got != tc.want {
				t.Errorf("LookupWebSocket(%q) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}

func TestLookupHTTP(t *testing.T) {
	t.Parallel()
	_, cfg := load(t, testSnapshot())
	tests := []struct {
		path       string
		want, rest string
	}{
		{"/shop/orders", "orders", ""},
		{"/shop/orders/", "orders", ""},
		{"/shop/orders/42", "orders", "42"},
		{"/Shop/Orders/42/Items/A", "orders", "42/Items/A"},
		{"/shop/ordersX/1", "shop", "ordersX/1"}, // segment prefixes only
		{"/shop", "shop", ""},
		{"/SHOP/anything/else", "shop", "anything/else"},
		{"/public/x", "public", "x"},
		{"/chat", "", ""}, // a WebSocket API
		{"/nothing/here", "", ""},
		{"/", "", ""},
		{"/İstanbul/x", "", ""}, // lower-casing changes the byte length
		{"/shop/İ", "shop", "İ"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			a, rest := cfg.LookupHTTP(request(tc.path))
			if got := apiName(a); got != tc.want || rest != tc.rest {
				t.Errorf("LookupHTTP(%q) = %q, %q; want %q, %q", tc.path, got, rest, tc.want, tc.rest)
			}
		})
	}
}

func TestLookupHTTPEdges(t *testing.T) {
	t.Parallel()
	snap := testSnapshot()
	snap.Entities = append(snap.Entities,
		apiEnt("root", "", "http", nil), link(configwire.KindGatewayAPI, "gateways/gw1", "root"),
		apiEnt("kelvin", "kelvin", "http", nil), link(configwire.KindGatewayAPI, "gateways/gw1", "kelvin"))
	_, cfg := load(t, snap)
	for path, want := range map[string][2]string{
		"/":            {"root", ""},
		"/a/b":         {"root", "a/b"},
		"/shop/x":      {"shop", "x"},
		"/shop/orders": {"orders", ""},
		// U+212A KELVIN SIGN lower-cases to a one-byte k: the rest must still be cut right.
		"/\u212Aelvin/x/y": {"kelvin", "x/y"},
	} {
		a, rest := cfg.LookupHTTP(request(path))
		if got := [2]string{apiName(a), rest}; got != want {
			t.Errorf("LookupHTTP(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestAPIProperties(t *testing.T) {
	t.Parallel()
	_, cfg := load(t, testSnapshot())
	type props struct {
		Name, Path, Type, ServiceURL, KeyHeader, KeyQuery, Open string
		Required                                                bool
		Products                                                []string
	}
	get := func(a *API) props {
		p := props{Name: a.Name, Path: a.Path, Type: a.Type, KeyHeader: a.KeyHeader, KeyQuery: a.KeyQuery,
			Required: a.SubscriptionRequired, Products: sortedKeys(a.Products), Open: productName(a.OpenProduct)}
		if a.ServiceURL != nil {
			p.ServiceURL = a.ServiceURL.String()
		}
		return p
	}
	tests := []struct {
		path string
		want props
	}{
		{"chat", props{Name: "chat", Path: "chat", Type: "websocket", ServiceURL: "ws://backend.internal/chat",
			KeyHeader: "Ocp-Apim-Subscription-Key", KeyQuery: "subscription-key", Open: "-", Required: true, Products: []string{"starter"}}},
		{"shop/orders", props{Name: "orders", Path: "shop/orders", Type: "http", ServiceURL: "http://backend.internal/orders",
			KeyHeader: "X-Key", KeyQuery: "key", Open: "-", Required: true, Products: []string{"starter"}}},
		{"shop", props{Name: "shop", Path: "Shop", Type: "http", ServiceURL: "http://backend.internal/shop",
			KeyHeader: "Ocp-Apim-Subscription-Key", KeyQuery: "subscription-key", Open: "-", Required: false}},
		{"public", props{Name: "public", Path: "public", Type: "http", ServiceURL: "http://backend.internal/public",
			KeyHeader: "Ocp-Apim-Subscription-Key", KeyQuery: "subscription-key", Open: "free", Required: true, Products: []string{"free"}}},
	}
	for _, tc := range tests {
		a := cfg.API(tc.path)
		if a == nil {
			t.Errorf("API(%q) = nil", tc.path)
			continue
		}
		if diff := cmp.Diff(tc.want, get(a)); diff != "" {
			t.Errorf("API(%q) (-want +got):\n%s", tc.path, diff)
		}
	}
	if got := cfg.APIs(); got != 4 {
		t.Errorf("APIs() = %d, want 4 (other is linked to gw2 only)", got)
	}
	if cfg.Revision != testRevision || cfg.ServiceID != testServiceID || cfg.Service != "svc" || cfg.Gateway != "gw1" {
		t.Errorf("identity = %d %q %q %q", cfg.Revision, cfg.ServiceID, cfg.Service, cfg.Gateway)
	}
}

func TestSubscription(t *testing.T) {
	t.Parallel()
	_, cfg := load(t, testSnapshot())
	type covers struct {
		OK      bool
		Product string
	}
	tests := []struct {
		key        string
		wantName   string // "" = unknown key
		wantActive bool
		wantScope  string
		// covers maps API paths to what Covers answers.
		covers map[string]covers
	}{
		{key: "key-all-1", wantName: "all", wantActive: true, wantScope: "apis",
			covers: map[string]covers{"chat": {true, "-"}, "shop/orders": {true, "-"}, "public": {true, "-"}}},
		{key: "key-all-2", wantName: "all", wantActive: true, wantScope: "apis"},
		{key: "key-chat", wantName: "chat-only", wantActive: true, wantScope: "apis/chat",
			covers: map[string]covers{"chat": {true, "-"}, "shop/orders": {false, "-"}}},
		{key: "key-starter-1", wantName: "Starter-Sub", wantActive: true, wantScope: "products/starter",
			covers: map[string]covers{"chat": {true, "starter"}, "shop/orders": {true, "starter"}, "shop": {false, "-"}, "public": {false, "-"}}},
		{key: "key-starter-2", wantName: "Starter-Sub", wantActive: true, wantScope: "products/starter"},
		{key: "key-free", wantName: "free", wantActive: true, wantScope: "products/free",
			covers: map[string]covers{"public": {true, "free"}, "chat": {false, "-"}}},
		{key: "key-susp", wantName: "suspended", wantActive: false, wantScope: "apis"},
		{key: "no-such-key"},
		{key: ""},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			t.Parallel()
			s := cfg.Subscription(hash(tc.key))
			if tc.wantName == "" {
				if s != nil {
					t.Fatalf("Subscription(%q) = %s, want none", tc.key, s.Name)
				}
				return
			}
			if s == nil {
				t.Fatalf("Subscription(%q) = nil, want %s", tc.key, tc.wantName)
			}
			if s.Name != tc.wantName || s.Active() != tc.wantActive || s.Scope() != tc.wantScope {
				t.Errorf("Subscription(%q) = %s active=%v scope=%q; want %s %v %q", tc.key, s.Name, s.Active(), s.Scope(),
					tc.wantName, tc.wantActive, tc.wantScope)
			}
			if want := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC); !s.StartDate().Equal(want) {
				t.Errorf("StartDate = %v, want %v (the created date)", s.StartDate(), want)
			}
			if want := svcARM + "/users/u-" + tc.wantName; s.OwnerID != want {
				t.Errorf("OwnerID = %q, want %q", s.OwnerID, want)
			}
			for path, want := range tc.covers {
				ok, p := s.Covers(cfg.API(path))
				if got := (covers{ok, productName(p)}); got != want {
					t.Errorf("Covers(%s) = %+v, want %+v", path, got, want)
				}
			}
		})
	}
	if got := cfg.Keys(); got != 7 {
		t.Errorf("Keys() = %d, want 7", got)
	}
}

func TestMatchOperation(t *testing.T) {
	t.Parallel()
	_, cfg := load(t, testSnapshot())
	orders, shop, public := cfg.API("shop/orders"), cfg.API("shop"), cfg.API("public")
	tests := []struct {
		api          *API
		method, rest string
		want         string // operation name, "" = none
	}{
		{orders, "GET", "", "listOrders"},
		{orders, "GET", "/", "listOrders"},
		{orders, "POST", "", "createOrder"},
		{orders, "post", "", "createOrder"},
		{orders, "DELETE", "", ""},
		{orders, "GET", "42", "getOrder"},
		{orders, "GET", "latest", "latest"}, // a literal segment beats a parameter
		{orders, "GET", "LATEST", "latest"},
		{orders, "GET", "42/items/7", "getItem"},
		{orders, "GET", "42/items", ""},
		{orders, "GET", "42/items/7/more", ""},
		{orders, "PUT", "files/a/b/c", "files"}, // method * and a {*path} wildcard
		{orders, "GET", "files", "files"},
		{orders, "GET", "filesx", "getOrder"},
		{shop, "GET", "", "any"},
		{shop, "GET", "a/b/c", "any"},
		{shop, "POST", "a", ""},
		{public, "GET", "x", "get"},
	}
	for _, tc := range tests {
		if got := tc.api.MatchOperation(tc.method, tc.rest); opName(got) != tc.want {
			t.Errorf("%s.MatchOperation(%s, %q) = %q, want %q", tc.api.Name, tc.method, tc.rest, opName(got), tc.want)
		}
	}
	if got := opName(cfg.API("chat").Handshake()); got != "onHandshake" {
		t.Errorf("chat Handshake() = %q", got)
	}
	if got := orders.Handshake(); got != nil {
		t.Errorf("orders Handshake() = %q, want nil", got.Name)
	}
}

func opName(o *Operation) string {
	if o == nil {
		return ""
	}
	return o.Name
}

func TestPipelines(t *testing.T) {
	t.Parallel()
	_, cfg := load(t, testSnapshot())
	chat, orders, public := cfg.API("chat"), cfg.API("shop/orders"), cfg.API("public")
	tests := []struct {
		name    string
		op      *Operation
		product *Product
		want    []string
	}{
		{"websocket handshake without product", chat.Handshake(), nil,
			[]string{"X-Api=hello", "X-Global=g", "X-Op=hs"}},
		{"websocket handshake in starter", chat.Handshake(), chat.Products["starter"],
			[]string{"X-Api=hello", "X-Global=g", "X-Op=hs", "X-Product=starter"}},
		{"secret named value", orders.MatchOperation("GET", "1"), orders.Products["starter"],
			[]string{"X-Global=g", "X-Product=starter", "X-Secret=s3cr3t"}},
		{"product without policy", public.MatchOperation("GET", ""), public.OpenProduct,
			[]string{"X-Global=g"}},
		{"product of another API", chat.Handshake(), &Product{Name: "free"}, []string{"<no pipeline>"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, headers(t, tc.op.Pipeline(tc.product))); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLoadErrors checks that a snapshot with an entity that cannot be decoded at all is not
// installed, and that the Builder keeps its state.
func TestLoadErrors(t *testing.T) {
	t.Parallel()
	b, cfg := load(t, testSnapshot())
	before := view(t, cfg)
	snap := testSnapshot()
	snap.Revision++
	snap.Entities = append(snap.Entities, configwire.Entity{Kind: configwire.KindSubscription, Name: "x", Properties: []byte(`"x"`)})
	if got, err := b.Load(snap); err == nil {
		t.Fatalf("Load = revision %d, want an error", got.Revision)
	}
	if b.Current() != cfg || b.Revision() != testRevision {
		t.Fatalf("after a failed Load: Current changed or Revision = %d", b.Revision())
	}
	if diff := cmp.Diff(before, view(t, b.Current())); diff != "" {
		t.Errorf("Config changed (-before +after):\n%s", diff)
	}
	// The Builder still applies the next revision on top of the good state.
	if _, err := b.Apply(change(testRevision+1, put(subEnt("new", "/apis", "active", "key-new")))); err != nil {
		t.Errorf("Apply after a failed Load: %v", err)
	}
}

// TestLoadFailsClosed checks that a snapshot with a policy or API this node cannot compile is
// installed: that API's pipelines refuse every request, the failure is listed with where it
// stands, and every other API serves as before (issue 11).
func TestLoadFailsClosed(t *testing.T) {
	t.Parallel()
	refused := "[<refused 500 PolicyCompileFailure>]"
	tests := []struct {
		name string
		edit func(*configwire.Snapshot)
		// want are the lines of view that change, and the failure listed.
		want    []string
		failure Failure
	}{
		{"missing named value", func(s *configwire.Snapshot) {
			s.Entities = append(s.Entities, policyEnt("apis/shop", "X", "{{missing}}"))
		}, []string{"op shop/any GET /{*rest}: " + refused},
			Failure{API: "shop", Operation: "any", Scope: "api:shop", Policy: "set-header", Line: 1, Column: 28, Error: "the named value 'missing' is not defined"}},
		{"policy that does not parse", func(s *configwire.Snapshot) {
			s.Entities = append(s.Entities, ent(configwire.KindPolicy, "apis/shop", "policy", obj{"value": "<policies><inbound>", "format": "xml"}))
		}, []string{"op shop/any GET /{*rest}: " + refused},
			Failure{API: "shop", Operation: "any", Scope: "api:shop", Line: 1, Column: 20, Error: "Unexpected end of file"}},
		{"bad serviceUrl", func(s *configwire.Snapshot) {
			s.Entities = append(s.Entities, apiEnt("shop", "shop", "http", obj{"serviceUrl": "http://[::1"}))
		}, []string{"op shop/any GET /{*rest}: " + refused},
			Failure{API: "shop", Scope: "api:shop"}},
		{"product policy that does not compile", func(s *configwire.Snapshot) {
			s.Entities = append(s.Entities, ent(configwire.KindPolicy, "products/starter", "policy", obj{"format": "xml",
				"value": `<policies><inbound><base /><set-header name="X" exists-action="override"><value>@(context.Request.Url.Path.Normalize())</value></set-header></inbound></policies>`}))
		}, []string{"op chat/onHandshake in starter: " + refused, "op orders/latest in starter: " + refused,
			"op chat/onHandshake GET /: [X-Api=hello X-Global=g X-Op=hs]", "op orders/latest GET /latest: [X-Global=g X-Secret=s3cr3t]"},
			Failure{API: "chat", Operation: "onHandshake", Product: "starter", Scope: "product:starter", Policy: "set-header", Line: 1, Column: 28}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, good := load(t, testSnapshot())
			snap := testSnapshot()
			tc.edit(&snap)
			b, cfg := load(t, snap)
			got := view(t, cfg)
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("view lacks %q:\n%s", w, strings.Join(got, "\n"))
				}
			}
			failures := cfg.Failures()
			if len(failures) == 0 {
				t.Fatalf("Failures() is empty")
			}
			f := failures[0]
			if f.Error == "" || !strings.Contains(f.Error, tc.failure.Error) {
				t.Errorf("failure error = %q, want it to contain %q", f.Error, tc.failure.Error)
			}
			f.Error = tc.failure.Error
			if diff := cmp.Diff(tc.failure, f); diff != "" {
				t.Errorf("failure (-want +got):\n%s", diff)
			}
			wantAPIs := 1
			if f.Product != "" {
				wantAPIs = 2 // chat and orders, both in starter
			}
			if cfg.FailedAPIs() != wantAPIs {
				t.Errorf("FailedAPIs = %d, want %d", cfg.FailedAPIs(), wantAPIs)
			}
			// Everything else serves as in the good configuration.
			for _, line := range view(t, good) {
				api := strings.Fields(line)
				if len(api) > 1 && api[0] == "op" && f.Product == "" && strings.HasPrefix(strings.ToLower(api[1]), strings.ToLower(f.API)+"/") {
					continue
				}
				if f.Product != "" && strings.Contains(line, " in "+f.Product+":") {
					continue
				}
				if strings.HasPrefix(line, "api shop") && tc.name == "bad serviceUrl" {
					continue
				}
				if !slices.Contains(got, line) {
					t.Errorf("line %q of the good configuration is gone", line)
				}
			}
			// A later change that fixes the policy (or API) ends the failure.
			fix := put(policyEnt("apis/shop", "X", "fixed"))
			switch tc.name {
			case "bad serviceUrl":
				fix = put(apiEnt("shop", "shop", "http", nil))
			case "product policy that does not compile":
				fix = put(policyEnt("products/starter", "X-Product", "starter"))
			}
			fixed, err := b.Apply(change(testRevision+1, fix))
			if err != nil {
				t.Fatalf("Apply of the fix: %v", err)
			}
			if f := fixed.Failures(); len(f) != 0 || fixed.FailedAPIs() != 0 {
				t.Errorf("after the fix Failures() = %+v", f)
			}
		})
	}
}

// TestFailureRedactsSecrets checks that a compile error quoting a substituted secret named
// value lists it as ***: failures go to logs and heartbeats.
func TestFailureRedactsSecrets(t *testing.T) {
	t.Parallel()
	snap := testSnapshot()
	snap.Entities = append(snap.Entities, ent(configwire.KindPolicy, "apis/shop", "policy", obj{"format": "xml",
		"value": `<policies><inbound><base /><ip-filter action="allow"><address>{{sec}}</address></ip-filter></inbound></policies>`}))
	_, cfg := load(t, snap)
	f := cfg.Failures()
	if len(f) != 1 {
		t.Fatalf("Failures() = %+v, want one", f)
	}
	if strings.Contains(f[0].Error, "s3cr3t") || !strings.Contains(f[0].Error, "secret named value 'sec'") {
		t.Errorf("failure error = %q: want the details withheld, naming the secret named value", f[0].Error)
	}
}

// TestBrokenAPIFailsClosed checks that an API whose properties this node cannot decode (a
// newer management's shape) keeps its path, so that its requests are refused instead of
// reaching the API whose path is a prefix of it (orders at shop/orders, shop at shop, which
// needs no subscription).
func TestBrokenAPIFailsClosed(t *testing.T) {
	t.Parallel()
	b, _ := load(t, testSnapshot())
	cfg, err := b.Apply(change(testRevision+1, put(ent(configwire.KindAPI, "", "orders",
		obj{"path": "shop/orders", "type": "http", "protocols": "https"}))))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	api, _ := cfg.LookupHTTP(request("/shop/orders/latest"))
	if api == nil || api.Name != "orders" || !api.Broken() {
		t.Fatalf("LookupHTTP(/shop/orders/latest) = %+v, want the broken orders API", api)
	}
	if ws := cfg.LookupWebSocket(request("/shop/orders")); ws == nil || !ws.Broken() {
		t.Errorf("LookupWebSocket(/shop/orders) = %+v, want the broken orders API", ws)
	}
	if f := cfg.Failures(); len(f) != 1 || f[0].API != "orders" || !strings.Contains(f[0].Error, "do not decode") {
		t.Errorf("Failures() = %+v", f)
	}
	if api, _ := cfg.LookupHTTP(request("/shop/other")); api == nil || api.Name != "shop" {
		t.Errorf("LookupHTTP(/shop/other) = %+v, want shop", api)
	}
	// The fix routes it again.
	cfg, err = b.Apply(change(testRevision+2, put(apiEnt("orders", "/shop/orders/", "http", nil))))
	if err != nil {
		t.Fatalf("Apply of the fix: %v", err)
	}
	if api, _ := cfg.LookupHTTP(request("/shop/orders/latest")); api == nil || api.Broken() || len(cfg.Failures()) != 0 {
		t.Errorf("after the fix: %+v, failures %+v", api, cfg.Failures())
	}
}

func TestExportRoundTrip(t *testing.T) {
	t.Parallel()
	b, _ := load(t, testSnapshot())
	if _, err := b.Apply(change(testRevision+1,
		put(subEnt("new", "/apis/chat", "active", "key-new", "key-new-2")),
		put(apiEnt("shop", "new/path", "http", nil)),
		put(policyEnt("products/starter", "X-Product", "v2")),
	)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	snap := b.Export()
	if snap.Revision != testRevision+1 || snap.ServiceID != testServiceID || snap.Service != "svc" || snap.Gateway != "gw1" {
		t.Errorf("Export identity = %d %q %q %q", snap.Revision, snap.ServiceID, snap.Service, snap.Gateway)
	}
	b2, cfg2 := load(t, snap)
	if diff := cmp.Diff(view(t, b.Current()), view(t, cfg2)); diff != "" {
		t.Errorf("Load(Export()) serves differently (-exported +loaded):\n%s", diff)
	}
	// The loaded Builder carries on with the next revision.
	cfg3, err := b2.Apply(change(testRevision+2, del(configwire.KindSubscription, "", "NEW")))
	if err != nil {
		t.Fatalf("Apply after round trip: %v", err)
	}
	if s := cfg3.Subscription(hash("key-new")); s != nil {
		t.Errorf("deleted subscription still resolves after round trip: %s", s.Name)
	}
}

func TestEmpty(t *testing.T) {
	t.Parallel()
	b, old := load(t, testSnapshot())
	cfg := b.Empty(testRevision + 1)
	if cfg.APIs() != 0 || cfg.Keys() != 0 || cfg.LookupWebSocket(request("chat")) != nil || cfg.Subscription(hash("key-all-1")) != nil {
		t.Errorf("Empty config serves something: apis %d keys %d", cfg.APIs(), cfg.Keys())
	}
	if a, _ := cfg.LookupHTTP(request("shop/orders/1")); a != nil {
		t.Errorf("Empty config: LookupHTTP = %s", a.Name)
	}
	if cfg.Revision != testRevision+1 {
		t.Errorf("Revision = %d", cfg.Revision)
	}
	if old.LookupWebSocket(request("chat")) == nil {
		t.Errorf("Empty changed the previous Config")
	}
	if _, err := b.Apply(change(testRevision+2, put(subEnt("x", "/apis", "active", "k")))); err == nil {
		t.Errorf("Apply after Empty succeeded; want a resync")
	}
	if _, err := b.Load(testSnapshot()); err != nil {
		t.Errorf("Load after Empty: %v", err)
	}
}
