package api_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"gatehouse.dev/management/internal/mgmttest"
	"gatehouse.dev/pkg/configwire"
)

// single is the properties of a Single backend at u.
func single(u string) map[string]any {
	return map[string]any{"url": u, "protocol": "http"}
}

// breakerRule is a valid circuit-breaker rule with field replaced in its failureCondition.
func breakerRule(cond map[string]any) map[string]any {
	fc := map[string]any{"count": 3, "interval": "PT1M", "statusCodeRanges": []any{map[string]any{"min": 500, "max": 599}}}
	for k, v := range cond {
		if v == nil {
			delete(fc, k)
			continue
		}
		fc[k] = v
	}
	return map[string]any{"rules": []any{map[string]any{"name": "r", "tripDuration": "PT1M", "failureCondition": fc}}}
}

func TestBackends(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "backends")
	member := func(name string, priority, weight int) map[string]any {
		return map[string]any{"id": c.id("/backends/" + name), "priority": priority, "weight": weight}
	}

	t.Run("refused properties", func(t *testing.T) {
		c.must(http.StatusCreated, http.MethodPut, "/namedValues/token", map[string]any{"properties": map[string]any{"displayName": "token", "value": "v"}})
		with := func(extra map[string]any) map[string]any {
			p := single("wss://b.example.com/hub")
			for k, v := range extra {
				p[k] = v
			}
			return p
		}
		for _, tc := range []struct {
			name, target string
			props        map[string]any
		}{
			{"no url", "properties.url", map[string]any{"protocol": "http"}},
			{"relative url", "properties.url", single("b.example.com")},
			{"ftp url", "properties.url", single("ftp://b.example.com")},
			{"no protocol", "properties.protocol", map[string]any{"url": "https://b.example.com"}},
			{"soap", "properties.protocol", with(map[string]any{"protocol": "soap"})},
			{"unknown protocol", "properties.protocol", with(map[string]any{"protocol": "grpc"})},
			{"unknown property", "properties", with(map[string]any{"colour": "blue"})},
			{"proxy", "properties.proxy", with(map[string]any{"proxy": map[string]any{"url": "http://proxy.example.com"}})},
			{"service fabric", "properties.properties.serviceFabricCluster", with(map[string]any{"properties": map[string]any{"serviceFabricCluster": map[string]any{}}})},
			{"certificateIds", "properties.credentials.certificateIds[0]", with(map[string]any{"credentials": map[string]any{"certificateIds": []string{"/x/certificates/c"}}})},
			{"certificate thumbprints", "properties.credentials.certificate[0]", with(map[string]any{"credentials": map[string]any{"certificate": []string{"ABCD"}}})},
			{"missing named value", "properties.credentials", with(map[string]any{"credentials": map[string]any{"header": map[string]any{"x-key": []string{"{{nope}}"}}}})},
			{"authorization without parameter", "properties.credentials.authorization.parameter", with(map[string]any{"credentials": map[string]any{"authorization": map[string]any{"scheme": "Bearer"}}})},
			{"bad type", "properties.type", with(map[string]any{"type": "Cluster"})},
			{"title too long", "properties.title", with(map[string]any{"title": strings.Repeat("x", 301)})},
			{"two rules", "properties.circuitBreaker.rules", with(map[string]any{"circuitBreaker": map[string]any{"rules": []any{
				breakerRule(nil)["rules"].([]any)[0], breakerRule(nil)["rules"].([]any)[0]}}})},
			{"count and percentage", "properties.circuitBreaker.rules[0].failureCondition", with(map[string]any{"circuitBreaker": breakerRule(map[string]any{"percentage": 50})})},
			{"neither count nor percentage", "properties.circuitBreaker.rules[0].failureCondition", with(map[string]any{"circuitBreaker": breakerRule(map[string]any{"count": nil})})},
			{"count too large", "properties.circuitBreaker.rules[0].failureCondition.count", with(map[string]any{"circuitBreaker": breakerRule(map[string]any{"count": 10001})})},
			{"no interval", "properties.circuitBreaker.rules[0].failureCondition.interval", with(map[string]any{"circuitBreaker": breakerRule(map[string]any{"interval": nil})})},
			{"month interval", "properties.circuitBreaker.rules[0].failureCondition.interval", with(map[string]any{"circuitBreaker": breakerRule(map[string]any{"interval": "P1M"})})},
			{"no failure kinds", "properties.circuitBreaker.rules[0].failureCondition", with(map[string]any{"circuitBreaker": breakerRule(map[string]any{"statusCodeRanges": nil})})},
			{"status out of range", "properties.circuitBreaker.rules[0].failureCondition.statusCodeRanges[0]", with(map[string]any{"circuitBreaker": breakerRule(map[string]any{"statusCodeRanges": []any{map[string]any{"min": 100, "max": 599}}})})},
			{"pool without members", "properties.pool.services", map[string]any{"type": "Pool", "pool": map[string]any{"services": []any{}}}},
			{"pool member not an id", "properties.pool.services[0].id", map[string]any{"type": "Pool", "pool": map[string]any{"services": []any{map[string]any{"id": "plain-name"}}}}},
			{"pool member missing", "properties.pool.services[0].id", map[string]any{"type": "Pool", "pool": map[string]any{"services": []any{member("ghost", 1, 1)}}}},
			{"pool with url", "properties.url", map[string]any{"type": "Pool", "url": "https://b.example.com", "pool": map[string]any{"services": []any{member("ghost", 1, 1)}}}},
			{"pool priority", "properties.pool.services[0].priority", map[string]any{"type": "Pool", "pool": map[string]any{"services": []any{member("ghost", 101, 1)}}}},
			{"session affinity", "properties.pool.sessionAffinity", map[string]any{"type": "Pool", "pool": map[string]any{"sessionAffinity": map[string]any{}, "services": []any{member("ghost", 1, 1)}}}},
			{"egress: link-local", "properties.url", single("http://169.254.169.254/")},
		} {
			wantError(t, c.do(http.MethodPut, "/backends/bad", map[string]any{"properties": tc.props}), http.StatusBadRequest, "ValidationError", tc.target, "")
		}
		wantError(t, c.do(http.MethodGet, "/backends/bad", nil), http.StatusNotFound, "ResourceNotFound", "", "")
	})

	t.Run("CRUD, pools, references", func(t *testing.T) {
		created := c.must(http.StatusCreated, http.MethodPut, "/backends/east", map[string]any{"properties": map[string]any{
			"url": "wss://east.example.com/hub", "protocol": "http", "title": "East", "credentials": map[string]any{
				"header": map[string]any{"x-key": []string{"{{token}}"}}, "authorization": map[string]any{"scheme": "Bearer", "parameter": "{{token}}"}}}})
		p := armProps(t, created)
		if p["type"] != "Single" || p["tls"].(map[string]any)["validateCertificateChain"] != true {
			t.Errorf("defaults not filled: %v", p)
		}
		if created.JSON()["type"] != "Microsoft.ApiManagement/service/backends" {
			t.Errorf("type %v", created.JSON()["type"])
		}
		c.must(http.StatusCreated, http.MethodPut, "/backends/west", map[string]any{"properties": single("wss://west.example.com/hub")})
		c.must(http.StatusCreated, http.MethodPut, "/backends/pool", map[string]any{"properties": map[string]any{"type": "Pool",
			"pool": map[string]any{"services": []any{member("east", 1, 3), member("west", 2, 1)}}}})
		wantError(t, c.do(http.MethodPut, "/backends/pool2", map[string]any{"properties": map[string]any{"type": "Pool",
			"pool": map[string]any{"services": []any{member("pool", 1, 1)}}}}), http.StatusBadRequest, "ValidationError", "properties.pool.services[0].id", "Pool")
		if l := decodeList(t, c.must(http.StatusOK, http.MethodGet, "/backends?$filter=title%20eq%20'East'", nil)); len(l.Value) != 1 || l.Value[0]["name"] != "east" {
			t.Errorf("$filter title: %v", l.Value)
		}
		if l := decodeList(t, c.must(http.StatusOK, http.MethodGet, "/backends?$top=2", nil)); len(l.Value) != 2 || l.NextLink == nil {
			t.Errorf("$top=2: %d values, nextLink %v", len(l.Value), l.NextLink)
		}
		c.must(http.StatusOK, http.MethodPatch, "/backends/west", map[string]any{"properties": map[string]any{"title": "West"}}, "If-Match", "*")
		wantError(t, c.do(http.MethodPatch, "/backends/west", map[string]any{"properties": map[string]any{"type": "Pool", "url": nil, "protocol": nil,
			"pool": map[string]any{"services": []any{member("east", 1, 1)}}}}, "If-Match", "*"),
			http.StatusBadRequest, "ValidationError", "properties.type", "pool")

		// A policy's backend-id is checked against the backends.
		c.must(http.StatusCreated, http.MethodPut, "/apis/ws", map[string]any{"properties": wsAPI("ws")})
		wantError(t, c.do(http.MethodPut, "/apis/ws/operations/onHandshake/policies/policy",
			policyDoc(`<policies><inbound><base /><set-backend-service backend-id="ghost" /></inbound></policies>`, "")),
			http.StatusBadRequest, "ValidationError", "representation", "ghost")
		c.must(http.StatusCreated, http.MethodPut, "/apis/ws/operations/onHandshake/policies/policy",
			policyDoc(`<policies><inbound><base /><set-backend-service backend-id="Pool" /></inbound></policies>`, ""))

		// What is used cannot go; the refusal names its users.
		wantError(t, c.do(http.MethodDelete, "/backends/east", nil, "If-Match", "*"), http.StatusConflict, "Conflict", "", "the pool 'pool'")
		wantError(t, c.do(http.MethodDelete, "/backends/pool", nil, "If-Match", "*"), http.StatusConflict, "Conflict", "", "the policy of 'apis/ws/operations/onHandshake'")
		wantError(t, c.do(http.MethodDelete, "/namedValues/token", nil, "If-Match", "*"), http.StatusConflict, "Conflict", "", "backend 'east'")

		c.must(http.StatusAccepted, http.MethodPost, "/backends/east/reconnect", map[string]any{"properties": map[string]any{"after": "PT2M"}})
		wantError(t, c.do(http.MethodPost, "/backends/east/reconnect", map[string]any{"properties": map[string]any{"after": "PT1S"}}),
			http.StatusBadRequest, "ValidationError", "properties.after", "")
		wantError(t, c.do(http.MethodPost, "/backends/ghost/reconnect", nil), http.StatusNotFound, "ResourceNotFound", "", "")

		c.must(http.StatusOK, http.MethodDelete, "/apis/ws/operations/onHandshake/policies/policy", nil, "If-Match", "*")
		c.must(http.StatusOK, http.MethodDelete, "/backends/pool", nil, "If-Match", "*")
		c.must(http.StatusOK, http.MethodDelete, "/backends/east", nil, "If-Match", "*")
	})
}

// TestBackendsInSnapshot checks that nodes receive the backends.
func TestBackendsInSnapshot(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "backends-snapshot")
	c.must(http.StatusCreated, http.MethodPut, "/backends/one", map[string]any{"properties": single("wss://one.example.com/")})
	c.must(http.StatusCreated, http.MethodPut, "/gateways/gw", map[string]any{"properties": map[string]any{"locationData": map[string]any{"name": "here"}}})
	token := c.must(http.StatusOK, http.MethodPost, "/gateways/gw/generateToken",
		map[string]any{"keyType": "primary", "expiry": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}).JSON()["value"].(string)
	_, snap := gatewayConfig(t, env, token)
	if names := entityNames(snap, configwire.KindBackend); !slices.Equal(names, []string{"one"}) {
		t.Errorf("backends in the snapshot: %v", names)
	}
}
