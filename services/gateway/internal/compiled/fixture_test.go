package compiled

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/pipeline"
)

// svcARM is the service id prefix management puts in subscription scopes and owner ids.
const svcARM = "/subscriptions/s/resourceGroups/r/providers/Microsoft.ApiManagement/service/svc"

const (
	testServiceID = "0b6c3f4e-svc"
	testRevision  = 10
)

func raw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

type obj = map[string]any

func ent(kind, parent, name string, props obj) configwire.Entity {
	return configwire.Entity{Kind: kind, Parent: parent, Name: name, Properties: raw(props), Revision: 1}
}

func apiEnt(name, path, typ string, extra obj) configwire.Entity {
	p := obj{"displayName": strings.ToUpper(name[:1]) + name[1:], "path": path, "type": typ,
		"serviceUrl": "http://backend.internal/" + name, "protocols": []string{"https"}}
	if typ == "websocket" {
		p["serviceUrl"], p["protocols"] = "ws://backend.internal/"+name, []string{"ws", "wss"}
	}
	for k, v := range extra {
		p[k] = v
	}
	return ent(configwire.KindAPI, "", name, p)
}

func opEnt(api, name, method, template string) configwire.Entity {
	return ent(configwire.KindOperation, "apis/"+api, name, obj{"displayName": name, "method": method, "urlTemplate": template})
}

// policyEnt is a policy whose inbound section sets header to value, after <base/> below the
// global scope.
func policyEnt(parent, header, value string) configwire.Entity {
	base := "<base />"
	if parent == "" {
		base = ""
	}
	doc := `<policies><inbound>` + base + `<set-header name="` + header + `" exists-action="override"><value>` + value +
		`</value></set-header></inbound></policies>`
	return ent(configwire.KindPolicy, parent, "policy", obj{"value": doc, "format": "xml"})
}

func productEnt(name string, subscriptionRequired bool) configwire.Entity {
	return ent(configwire.KindProduct, "", name, obj{"displayName": name, "subscriptionRequired": subscriptionRequired, "state": "published"})
}

func link(kind, parent, api string) configwire.Entity {
	return configwire.Entity{Kind: kind, Parent: parent, Name: api, Revision: 1}
}

func namedValue(name, display, value string) configwire.Entity {
	return ent(configwire.KindNamedValue, "", name, obj{"displayName": display, "value": value, "secret": false})
}

func subEnt(name, scope, state string, keys ...string) configwire.Entity {
	e := ent(configwire.KindSubscription, "", name, obj{"scope": svcARM + scope, "state": state, "displayName": name,
		"ownerId": svcARM + "/users/u-" + name, "createdDate": "2024-01-02T03:04:05Z", "allowTracing": false})
	for _, k := range keys {
		e.KeyHashes = append(e.KeyHashes, configwire.KeyHash(k))
	}
	return e
}

// testSnapshot is the configuration of gateway gw1 of service svc:
//
//	chat    websocket  /chat         gw1 gw2  product starter  policies: API ({{Greeting}}), onHandshake
//	orders  http       /shop/orders  gw1      product starter  policy: API ({{sec}}, a secret)
//	shop    http       /Shop         gw1
//	public  http       /public       gw1      product free (open)
//	other   websocket  /other        gw2
//
// with a global and a starter product policy, and subscriptions all (/apis), chat-only
// (/apis/chat), Starter-Sub (/products/starter), suspended (/apis) and free (/products/free).
func testSnapshot() configwire.Snapshot {
	ents := []configwire.Entity{
		ent(configwire.KindGateway, "", "gw1", obj{"locationData": obj{"name": "here"}}),
		apiEnt("chat", "chat", "websocket", nil),
		opEnt("chat", "onHandshake", "GET", "/"),
		apiEnt("orders", "/shop/orders/", "http", obj{"subscriptionKeyParameterNames": obj{"header": "X-Key", "query": "key"}}),
		opEnt("orders", "listOrders", "GET", "/"),
		opEnt("orders", "createOrder", "POST", "/"),
		opEnt("orders", "getOrder", "GET", "/{id}"),
		opEnt("orders", "latest", "GET", "/latest"),
		opEnt("orders", "getItem", "GET", "/{id}/items/{item}?expand={expand}"),
		opEnt("orders", "files", "*", "/files/{*path}"),
		apiEnt("shop", "Shop", "http", obj{"subscriptionRequired": false}),
		opEnt("shop", "any", "GET", "/{*rest}"),
		apiEnt("public", "public", "http", nil),
		opEnt("public", "get", "GET", "/{*rest}"),
		apiEnt("other", "other", "websocket", nil),
		opEnt("other", "onHandshake", "GET", "/"),
		productEnt("starter", true),
		productEnt("free", false),
		link(configwire.KindProductAPI, "products/starter", "chat"),
		link(configwire.KindProductAPI, "products/starter", "orders"),
		link(configwire.KindProductAPI, "products/free", "public"),
		link(configwire.KindGatewayAPI, "gateways/gw1", "chat"),
		link(configwire.KindGatewayAPI, "gateways/gw1", "orders"),
		link(configwire.KindGatewayAPI, "gateways/gw1", "shop"),
		link(configwire.KindGatewayAPI, "gateways/gw1", "public"),
		link(configwire.KindGatewayAPI, "gateways/gw2", "chat"),
		link(configwire.KindGatewayAPI, "gateways/gw2", "other"),
		policyEnt("", "X-Global", "g"),
		policyEnt("products/starter", "X-Product", "starter"),
		policyEnt("apis/chat", "X-Api", "{{Greeting}}"),
		policyEnt("apis/chat/operations/onHandshake", "X-Op", "hs"),
		policyEnt("apis/orders", "X-Secret", "{{sec}}"),
		namedValue("greeting-nv", "Greeting", "hello"),
		{Kind: configwire.KindNamedValue, Name: "sec", Properties: raw(obj{"displayName": "sec", "secret": true}),
			Secret: true, SecretValue: "s3cr3t"},
		subEnt("all", "/apis", "active", "key-all-1", "key-all-2"),
		subEnt("chat-only", "/apis/chat", "active", "key-chat"),
		subEnt("Starter-Sub", "/products/starter", "active", "key-starter-1", "key-starter-2"),
		subEnt("suspended", "/apis", "suspended", "key-susp"),
		subEnt("free", "/products/free", "active", "key-free"),
	}
	return configwire.Snapshot{ServiceID: testServiceID, Service: "svc", Gateway: "gw1", Revision: testRevision, Entities: ents}
}

func load(t testing.TB, snap configwire.Snapshot) (*Builder, *Config) {
	t.Helper()
	b := NewBuilder(pipeline.Env{})
	cfg, err := b.Load(snap)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return b, cfg
}

func hash(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// change is the change of revision rev with items.
func change(rev int64, items ...configwire.Item) configwire.Change {
	return configwire.Change{ServiceID: testServiceID, Revision: rev, Items: items}
}

func put(e configwire.Entity) configwire.Item {
	return configwire.Item{Op: configwire.OpPut, Entity: e}
}

// del is a delete item as management sends it: kind, parent and name only.
func del(kind, parent, name string) configwire.Item {
	return configwire.Item{Op: configwire.OpDelete, Entity: configwire.Entity{Kind: kind, Parent: parent, Name: name}}
}

// headers runs pl on a plain request and returns the X- headers it set, "name=value" sorted.
func headers(t testing.TB, pl *pipeline.Pipeline) []string {
	t.Helper()
	if pl == nil {
		return []string{"<no pipeline>"}
	}
	req := &pipeline.Request{HTTP: httptest.NewRequest(http.MethodGet, "http://gw.example/x", nil), Header: http.Header{},
		Query: url.Values{}, Now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	if r := pl.Run(context.Background(), req); r != nil {
		if r.Reason == "PolicyCompileFailure" {
			return []string{fmt.Sprintf("<refused %d %s>", r.Status, r.Reason)}
		}
		t.Fatalf("pipeline Run = %+v", r)
	}
	var out []string
	for k, vs := range req.Header {
		out = append(out, k+"="+strings.Join(vs, ","))
	}
	slices.Sort(out)
	return out
}

// view is what a user of a Config can observe of it through the fixed probes below, one line
// per probe. Two Configs with equal views serve the same traffic the same way.
func view(t testing.TB, c *Config) []string {
	t.Helper()
	var out []string
	for _, p := range []string{"chat", "chat2", "other", "orders", "ws/chat"} {
		out = append(out, fmt.Sprintf("ws %s → %s", p, apiName(c.LookupWebSocket(request(p)))))
	}
	for _, p := range []string{"shop/orders/7", "shop/x", "public", "orders/7", "new/path/x"} {
		a, rest := c.LookupHTTP(request(p))
		out = append(out, fmt.Sprintf("http %s → %s %q", p, apiName(a), rest))
	}
	for _, k := range []string{"key-all-1", "key-all-2", "key-chat", "key-starter-1", "key-starter-2", "key-susp", "key-free", "key-new", "key-new-2"} {
		s := c.Subscription(hash(k))
		if s == nil {
			out = append(out, "key "+k+" → none")
			continue
		}
		line := fmt.Sprintf("key %s → %s %s %s", k, s.Name, s.State(), s.Scope())
		for _, path := range []string{"chat", "shop/orders", "shop", "public"} {
			if a := c.API(path); a != nil {
				ok, prod := s.Covers(a)
				line += fmt.Sprintf(" %s:%v/%s", a.Name, ok, productName(prod))
			}
		}
		out = append(out, line)
	}
	for _, path := range []string{"chat", "shop/orders", "shop", "public", "new/path"} {
		a := c.API(path)
		if a == nil {
			continue
		}
		open := "-"
		if a.OpenProduct != nil {
			open = a.OpenProduct.Name
		}
		out = append(out, fmt.Sprintf("api %s: open=%s required=%v", a.Name, open, a.SubscriptionRequired))
		for _, op := range a.Operations {
			out = append(out, fmt.Sprintf("op %s/%s %s %s: %v", a.Name, op.Name, op.Method, op.URLTemplate, headers(t, op.Pipeline(nil))))
			for _, name := range sortedKeys(a.Products) {
				out = append(out, fmt.Sprintf("op %s/%s in %s: %v", a.Name, op.Name, name, headers(t, op.Pipeline(a.Products[name]))))
			}
		}
	}
	out = append(out, fmt.Sprintf("revision %d apis %d keys %d", c.Revision, c.APIs(), c.Keys()))
	for _, f := range c.Failures() {
		out = append(out, fmt.Sprintf("failure %+v", f))
	}
	return out
}

func apiName(a *API) string {
	if a == nil {
		return ""
	}
	return a.Name
}

func productName(p *Product) string {
	if p == nil {
		return "-"
	}
	return p.Name
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// request is a request for path, with no header nor query.
func request(path string) *http.Request {
	return &http.Request{URL: &url.URL{Path: path}, Header: http.Header{}}
}
