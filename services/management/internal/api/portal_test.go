package api_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/mgmttest"
	"gatehouse.dev/pkg/configwire"
)

const portalPrefix = "/gatehouse/portal/v1"

// userToken issues a token for user of the service at svc through the ARM API.
func userToken(t *testing.T, env *mgmttest.Env, svc, user string) string {
	t.Helper()
	r := env.Must(t, []int{200}, "POST", svc+"/users/"+user+"/token", props(map[string]any{
		"keyType": "primary", "expiry": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}))
	tok, _ := r.JSON()["value"].(string)
	if tok == "" {
		t.Fatalf("user token: %s", r.Body)
	}
	return tok
}

// bearer is the header pair that sends tok.
func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// serviceIDOf is the internal id of the service at ARM coordinates sub, rg, name.
func serviceIDOf(t *testing.T, env *mgmttest.Env, sub, rg, name string) string {
	t.Helper()
	svc, err := env.Catalog.GetService(context.Background(), catalog.ServiceRef{Subscription: sub, ResourceGroup: rg, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return svc.ID
}

// announceNode publishes a heartbeat of a live node of gateway in the service serviceID,
// reporting url, and waits until management has it.
func announceNode(t *testing.T, env *mgmttest.Env, serviceID, gateway, node, url string) {
	t.Helper()
	f := &fleetFixture{env: env, serviceID: serviceID}
	hb := f.beat(node, gateway, 1)
	hb.URL = url
	f.publish(t, hb)
}

// itemNames are the names of a {"value":[...]} body's items, sorted.
func itemNames(t *testing.T, r mgmttest.Response) []string {
	t.Helper()
	out := names(t, r)
	slices.Sort(out)
	return out
}

func TestUserTokenAPI(t *testing.T) {
	t.Parallel()
	env, iss, a, _ := startTenants(t)
	exp := func(d time.Duration) string { return time.Now().Add(d).UTC().Format(time.RFC3339) }

	tok := userToken(t, env, a.svc, "u1")
	r := env.Must(t, []int{200}, "POST", a.svc+"/users/u1/token", props(map[string]any{"keyType": "secondary", "expiry": exp(24 * time.Hour)}))
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", r.Header.Get("Cache-Control"))
	}
	secondary, _ := r.JSON()["value"].(string)
	for _, tk := range []string{tok, secondary} {
		if me := env.Must(t, []int{200}, "GET", portalPrefix+"/me", nil, bearer(tk)...).JSON(); me["kind"] != "consumer" || me["subject"] != "u1" {
			t.Errorf("GET /me with a user token: %v", me)
		}
	}

	for _, tc := range []struct {
		name   string
		user   string
		body   any
		token  string
		status int
		code   string
	}{
		{"past expiry", "u1", props(map[string]any{"keyType": "primary", "expiry": exp(-time.Hour)}), "", 400, "ValidationError"},
		{"beyond 30 days", "u1", props(map[string]any{"keyType": "primary", "expiry": exp(31 * 24 * time.Hour)}), "", 400, "ValidationError"},
		{"not a date", "u1", props(map[string]any{"keyType": "primary", "expiry": "tomorrow"}), "", 400, "ValidationError"},
		{"bad key type", "u1", props(map[string]any{"keyType": "master", "expiry": exp(time.Hour)}), "", 400, "ValidationError"},
		{"no body", "u1", nil, "", 400, "InvalidRequestContent"},
		{"unknown user", "nobody", props(map[string]any{"keyType": "primary", "expiry": exp(time.Hour)}), "", 404, "ResourceNotFound"},
		{"reader", "u1", props(map[string]any{"keyType": "primary", "expiry": exp(time.Hour)}), iss.token(t, "Reader", tenantA), 403, "AuthorizationFailed"},
		{"other tenant", "u1", props(map[string]any{"keyType": "primary", "expiry": exp(time.Hour)}), iss.token(t, "Contributor", tenantB), 403, "AuthorizationFailed"},
		{"a user token", "u1", props(map[string]any{"keyType": "primary", "expiry": exp(time.Hour)}), "Bearer " + tok, 403, "AuthorizationFailed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h []string
			if tc.token != "" {
				h = []string{"Authorization", tc.token}
			}
			wantAuthError(t, env.Do(t, "POST", a.svc+"/users/"+tc.user+"/token", tc.body, h...), tc.status, tc.code, nil)
		})
	}

	// A blocked user's token stops working; it works again once the user is active.
	env.Must(t, []int{200}, "PATCH", a.svc+"/users/u1", props(map[string]any{"state": "blocked"}), "If-Match", "*")
	wantAuthError(t, env.Do(t, "GET", portalPrefix+"/me", nil, bearer(tok)...), 401, "AuthenticationFailed", nil)
	wantAuthError(t, env.Do(t, "POST", a.svc+"/users/u1/token", props(map[string]any{"keyType": "primary", "expiry": exp(time.Hour)})), 400, "ValidationError", nil)
	env.Must(t, []int{200}, "PATCH", a.svc+"/users/u1", props(map[string]any{"state": "active"}), "If-Match", "*")
	env.Must(t, []int{200}, "GET", portalPrefix+"/me", nil, bearer(tok)...)

	// A consumer may not use the ARM API at all, not even on its own service.
	for _, c := range everyCall() {
		r := env.Do(t, c.method, a.svc+c.rel, c.body, bearer(tok)...)
		if c.method == "HEAD" {
			if r.Status != 403 {
				t.Errorf("HEAD %s with a user token: %d, want 403", c.rel, r.Status)
			}
			continue
		}
		wantAuthError(t, r, 403, "AuthorizationFailed", a.secrets)
	}
	wantAuthError(t, env.Do(t, "GET", "/subscriptions/"+tenantA+"/providers/Microsoft.ApiManagement/service", nil, bearer(tok)...), 403, "AuthorizationFailed", nil)

	// Deleting the user ends its tokens, even once a user of the same name exists again.
	env.Must(t, []int{204}, "DELETE", a.svc+"/users/u1?deleteSubscriptions=true", nil, "If-Match", "*")
	wantAuthError(t, env.Do(t, "GET", portalPrefix+"/me", nil, bearer(tok)...), 401, "AuthenticationFailed", nil)
	env.Must(t, []int{201}, "PUT", a.svc+"/users/u1", props(map[string]any{"email": "u1@svc-a.example.com", "firstName": "Una", "lastName": "One"}))
	wantAuthError(t, env.Do(t, "GET", portalPrefix+"/me", nil, bearer(tok)...), 401, "AuthenticationFailed", nil)
	wantAuthError(t, env.Do(t, "GET", portalPrefix+"/me", nil, bearer(tok[:len(tok)-4]+"AAA=")...), 401, "AuthenticationFailed", nil)

	if log := env.Log.String(); strings.Contains(log, tok) || strings.Contains(log, secondary) || strings.Contains(log, tok[strings.LastIndexByte(tok, '&')+1:]) {
		t.Error("management logged a user token")
	}
}

func TestPortalMe(t *testing.T) {
	t.Parallel()
	env, iss, a, b := startTenants(t)
	type service struct{ ID, Name, SubscriptionID, ResourceGroup string }
	type user struct{ ID, Name, Email, FirstName, LastName string }
	type identity struct {
		Kind, Subject, Role string
		Services            []service
		User                *user
	}
	svcA := service{ID: a.svc, Name: "svc-a", SubscriptionID: tenantA, ResourceGroup: "rg"}
	svcB := service{ID: b.svc, Name: "svc-b", SubscriptionID: tenantB, ResourceGroup: "rg"}
	for _, tc := range []struct {
		name  string
		token string
		want  identity
	}{
		{"admin", env.Token, identity{Kind: "admin", Subject: "admin", Role: "Contributor", Services: []service{svcA, svcB}}},
		{"tenant A contributor", strings.TrimPrefix(iss.token(t, "Contributor", tenantA), "Bearer "),
			identity{Kind: "tenant", Subject: "caller-contributor", Role: "Contributor", Services: []service{svcA}}},
		{"tenant B reader", strings.TrimPrefix(iss.token(t, "Reader", strings.ToUpper(tenantB)), "Bearer "),
			identity{Kind: "tenant", Subject: "caller-reader", Role: "Reader", Services: []service{svcB}}},
		{"every tenant", strings.TrimPrefix(iss.token(t, "Reader", "*"), "Bearer "),
			identity{Kind: "tenant", Subject: "caller-reader", Role: "Reader", Services: []service{svcA, svcB}}},
		{"a tenant without services", strings.TrimPrefix(iss.token(t, "Reader", "cccccccc-3333-4333-8333-cccccccccccc"), "Bearer "),
			identity{Kind: "tenant", Subject: "caller-reader", Role: "Reader", Services: []service{}}},
		{"consumer", userToken(t, env, a.svc, "u1"), identity{Kind: "consumer", Subject: "u1", Role: "Consumer", Services: []service{svcA},
			User: &user{ID: a.svc + "/users/u1", Name: "u1", Email: "u1@svc-a.example.com", FirstName: "Una", LastName: "One"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := env.Must(t, []int{200}, "GET", portalPrefix+"/me", nil, bearer(tc.token)...)
			var got identity
			if err := json.Unmarshal(r.Body, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("GET /me (-want +got):\n%s", diff)
			}
		})
	}
	for _, h := range [][]string{{"Authorization", ""}, bearer("nope"), bearer("6f1d6d1c-0a53-4f43-9d1e-2f3c4b5a6978&203001010000&c2ln"), {"Authorization", "Basic dTpw"}} {
		r := env.Do(t, "GET", portalPrefix+"/me", nil, h...)
		wantAuthError(t, r, 401, "AuthenticationFailed", nil)
		if r.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("401 without WWW-Authenticate for %q", h)
		}
	}
}

func TestPortalConsumer(t *testing.T) {
	t.Parallel()
	env, iss, a, b := startTenants(t)
	put := func(rel string, p map[string]any) {
		t.Helper()
		var body any
		if p != nil {
			body = props(p)
		}
		env.Must(t, []int{200, 201}, "PUT", a.svc+rel, body)
	}
	put("/apis/news", map[string]any{"displayName": "News", "type": "websocket", "serviceUrl": "wss://news.example.com", "path": "news"})
	put("/apis/orders", map[string]any{"displayName": "Orders", "serviceUrl": "https://orders.example.com", "path": "orders", "protocols": []string{"https"}})
	put("/products/starter/apis/news", nil)
	put("/users/u2", map[string]any{"email": "u2@svc-a.example.com", "firstName": "Uwe", "lastName": "Two"})
	put("/subscriptions/u1-starter", map[string]any{"scope": "/products/starter", "displayName": "Starter", "ownerId": "/users/u1", "state": "active"})
	put("/subscriptions/u1-orders", map[string]any{"scope": "/apis/orders", "displayName": "Orders", "ownerId": "/users/u1", "state": "suspended"})
	put("/subscriptions/u2-all", map[string]any{"scope": "/apis", "displayName": "All", "ownerId": "/users/u2", "state": "active"})
	u1, u2 := bearer(userToken(t, env, a.svc, "u1")), bearer(userToken(t, env, a.svc, "u2"))
	keysOf := func(sid string) map[string]any {
		return env.Must(t, []int{200}, "POST", a.svc+"/subscriptions/"+sid+"/listSecrets", nil).JSON()
	}

	// Their own subscriptions, without keys.
	r := env.Must(t, []int{200}, "GET", portalPrefix+"/subscriptions", nil, u1...)
	if diff := cmp.Diff([]string{"s1", "u1-orders", "u1-starter"}, itemNames(t, r)); diff != "" {
		t.Errorf("u1's subscriptions (-want +got):\n%s", diff)
	}
	u2Keys := keysOf("u2-all")
	var keys []string
	for _, sid := range []string{"s1", "u1-orders", "u1-starter", "u2-all"} {
		for _, k := range keysOf(sid) {
			keys = append(keys, k.(string))
		}
	}
	if l := leaks(string(r.Body), keys); len(l) > 0 {
		t.Errorf("the subscriptions list reveals keys: %s", r.Body)
	}
	if !strings.Contains(string(r.Body), `"id":"`+a.svc+`/subscriptions/s1"`) {
		t.Errorf("the subscriptions list lacks ARM ids: %s", r.Body)
	}
	if got := itemNames(t, env.Must(t, []int{200}, "GET", portalPrefix+"/subscriptions", nil, u2...)); !cmp.Equal(got, []string{"u2-all"}) {
		t.Errorf("u2's subscriptions = %v, want [u2-all]", got)
	}

	// Their keys, and nobody else's.
	if got, want := env.Must(t, []int{200}, "POST", portalPrefix+"/subscriptions/s1/listSecrets", nil, u1...).JSON(), keysOf("s1"); !cmp.Equal(got, want) {
		t.Errorf("u1's keys of s1 = %v, want %v", got, want)
	}
	for _, sid := range []string{"u2-all", "s2", "missing"} {
		for _, action := range []string{"listSecrets", "regeneratePrimaryKey", "regenerateSecondaryKey"} {
			wantAuthError(t, env.Do(t, "POST", portalPrefix+"/subscriptions/"+sid+"/"+action, nil, u1...), 404, "ResourceNotFound", keys)
		}
	}
	if got := keysOf("u2-all"); !cmp.Equal(got, u2Keys) {
		t.Errorf("u1 changed u2's keys: %v, were %v", got, u2Keys)
	}

	// Regenerating a key is a write like the ARM action: a new revision for the gateways.
	ref := catalog.ServiceRef{Subscription: tenantA, ResourceGroup: "rg", Name: "svc-a"}
	before, _ := env.Catalog.GetService(context.Background(), ref)
	old := keysOf("s1")
	env.Must(t, []int{204}, "POST", portalPrefix+"/subscriptions/s1/regeneratePrimaryKey", nil, u1...)
	mid := keysOf("s1")
	env.Must(t, []int{204}, "POST", portalPrefix+"/subscriptions/S1/regenerateSecondaryKey", nil, u1...)
	now := keysOf("s1")
	after, _ := env.Catalog.GetService(context.Background(), ref)
	if mid["primaryKey"] == old["primaryKey"] || mid["secondaryKey"] != old["secondaryKey"] || now["secondaryKey"] == mid["secondaryKey"] || now["primaryKey"] != mid["primaryKey"] {
		t.Errorf("keys went %v -> %v -> %v", old, mid, now)
	}
	if after.Revision != before.Revision+2 {
		t.Errorf("revision went %d -> %d, want two writes", before.Revision, after.Revision)
	}
	var outbox int
	if err := env.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE service_id = $1 AND revision > $2`, after.ID, before.Revision).Scan(&outbox); err != nil || outbox != 2 {
		t.Errorf("outbox rows for the regenerations: %d (%v), want 2", outbox, err)
	}

	// The APIs their active subscriptions reach.
	for _, tc := range []struct {
		name  string
		token []string
		want  []string
	}{
		{"API and product scopes; suspended left out", u1, []string{"chat", "news"}},
		{"all APIs", u2, []string{"chat", "news", "orders"}},
	} {
		r := env.Must(t, []int{200}, "GET", portalPrefix+"/apis", nil, tc.token...)
		if diff := cmp.Diff(tc.want, itemNames(t, r)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
		if !strings.Contains(string(r.Body), `"path":"chat"`) {
			t.Errorf("%s: the APIs lack their properties: %s", tc.name, r.Body)
		}
	}

	// The consumer endpoints are for consumers.
	for _, h := range [][]string{nil, {"Authorization", iss.token(t, "Contributor", tenantA)}} {
		for _, c := range []struct{ method, path string }{
			{"GET", "/subscriptions"}, {"GET", "/apis"}, {"POST", "/subscriptions/s1/listSecrets"}, {"POST", "/subscriptions/s1/regeneratePrimaryKey"},
		} {
			wantAuthError(t, env.Do(t, c.method, portalPrefix+c.path, nil, h...), 403, "AuthorizationFailed", keys)
		}
	}
	// A consumer of another service sees nothing of this one.
	bUser := bearer(userToken(t, env, b.svc, "u1"))
	if got := itemNames(t, env.Must(t, []int{200}, "GET", portalPrefix+"/subscriptions", nil, bUser...)); !cmp.Equal(got, []string{"s1"}) {
		t.Errorf("B's u1 lists %v, want its own s1", got)
	}
	if got := env.Must(t, []int{200}, "POST", portalPrefix+"/subscriptions/s1/listSecrets", nil, bUser...).JSON(); cmp.Equal(got, keysOf("s1")) {
		t.Error("B's u1 read the keys of A's s1")
	}
}

func TestConsoleNodes(t *testing.T) {
	t.Parallel()
	env, iss, a, _ := startTenants(t)
	idA, idB := serviceIDOf(t, env, tenantA, "rg", "svc-a"), serviceIDOf(t, env, tenantB, "rg", "svc-b")
	env.Must(t, []int{201}, "PUT", a.svc+"/gateways/edge", map[string]any{"properties": map[string]any{"locationData": map[string]any{"name": "edge"}}})
	announceNode(t, env, idA, "gw1", "a1", "ws://127.0.0.1:18081")
	announceNode(t, env, idA, "gw1", "a2", "")
	announceNode(t, env, idA, "edge", "a3", "wss://gw.example.com/edge")
	announceNode(t, env, idB, "gw1", "b1", "ws://127.0.0.1:18082")
	type node struct {
		Gateway, NodeID, URL string
		Revision             int64
		Healthy              bool
	}
	nodesA := []node{{"edge", "a3", "wss://gw.example.com/edge", 1, true}, {"gw1", "a1", "ws://127.0.0.1:18081", 1, true}}
	q := "?subscriptionId=" + tenantA + "&resourceGroup=rg"
	for _, tc := range []struct {
		name, path string
		auth       []string
		want       []node
	}{
		{"admin", "/services/svc-a/consolenodes" + q, nil, nodesA},
		{"tenant reader", "/services/SVC-A/consolenodes" + q, []string{"Authorization", iss.token(t, "Reader", tenantA)}, nodesA},
		{"consumer, no coordinates", "/services/svc-a/consolenodes", bearer(userToken(t, env, a.svc, "u1")), nodesA},
		{"consumer with coordinates", "/services/svc-a/consolenodes" + q, bearer(userToken(t, env, a.svc, "u1")), nodesA},
		{"other service", "/services/svc-b/consolenodes?subscriptionId=" + tenantB + "&resourceGroup=rg", nil, []node{{"gw1", "b1", "ws://127.0.0.1:18082", 1, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := env.Must(t, []int{200}, "GET", portalPrefix+tc.path, nil, tc.auth...)
			var got struct{ Value []node }
			if err := json.Unmarshal(r.Body, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got.Value); diff != "" {
				t.Errorf("nodes (-want +got):\n%s", diff)
			}
		})
	}
	consumerA := bearer(userToken(t, env, a.svc, "u1"))
	for _, tc := range []struct {
		name, path string
		auth       []string
		status     int
		code       string
	}{
		{"tenant A on B", "/services/svc-b/consolenodes?subscriptionId=" + tenantB + "&resourceGroup=rg", []string{"Authorization", iss.token(t, "Contributor", tenantA)}, 403, "AuthorizationFailed"},
		{"no coordinates", "/services/svc-a/consolenodes", nil, 400, "ValidationError"},
		{"unknown service", "/services/svc-z/consolenodes" + q, nil, 404, "ResourceNotFound"},
		{"consumer on B", "/services/svc-b/consolenodes?subscriptionId=" + tenantB + "&resourceGroup=rg", consumerA, 404, "ResourceNotFound"},
		{"consumer on B, no coordinates", "/services/svc-b/consolenodes", consumerA, 404, "ResourceNotFound"},
		{"consumer, wrong tenant", "/services/svc-a/consolenodes?subscriptionId=" + tenantB, consumerA, 404, "ResourceNotFound"},
		{"no token", "/services/svc-a/consolenodes" + q, []string{"Authorization", ""}, 401, "AuthenticationFailed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantAuthError(t, env.Do(t, "GET", portalPrefix+tc.path, nil, tc.auth...), tc.status, tc.code, nil)
		})
	}

	// The gateway nodes extension shows each node's URL.
	var l struct {
		Value []struct {
			Name       string
			Properties map[string]any
		}
	}
	if err := json.Unmarshal(env.Must(t, []int{200}, "GET", a.svc+"/gateways/gw1/nodes", nil).Body, &l); err != nil {
		t.Fatal(err)
	}
	urls := map[string]any{}
	for _, n := range l.Value {
		urls[n.Name] = n.Properties["url"]
	}
	if diff := cmp.Diff(map[string]any{"a1": "ws://127.0.0.1:18081", "a2": nil}, urls); diff != "" {
		t.Errorf("node URLs (-want +got):\n%s", diff)
	}

	// A heartbeat whose URL is not a ws:// or wss:// URL is dropped.
	hb := configwire.Heartbeat{NodeID: "a4", ServiceID: idA, Gateway: "gw1", Revision: 1, Healthy: true, Sent: time.Now(), URL: "http://169.254.169.254/"}
	if err := hb.Validate(); err == nil {
		t.Fatal("a heartbeat with an http:// URL validates")
	}
}
