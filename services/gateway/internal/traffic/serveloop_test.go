package traffic_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/traffic"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/pipeline"
	"gatehouse.dev/pkg/pipeline/ratecount"
)

// TestServeLoopDecides: the event loops get the REST requests whose policies cannot wait and
// whose backend is a plain http:// URL, with the request to send; the answers that come
// before the policies are written on the loop; everything else is declined, untouched, for
// net/http.
func TestServeLoopDecides(t *testing.T) {
	ents := []configwire.Entity{ent(t, configwire.KindGateway, "", "gw1", obj{"locationData": obj{"name": "here"}})}
	restAPI := func(name, serviceURL, policy string) {
		ents = append(ents,
			ent(t, configwire.KindAPI, "", name, obj{"displayName": name, "path": name, "type": "http",
				"serviceUrl": serviceURL, "protocols": []string{"http"}}),
			ent(t, configwire.KindOperation, "apis/"+name, "get", obj{"displayName": "get", "method": "GET", "urlTemplate": "/widgets/{id}"}),
			configwire.Entity{Kind: configwire.KindGatewayAPI, Parent: "gateways/gw1", Name: name, Revision: 1})
		if policy != "" {
			ents = append(ents, ent(t, configwire.KindPolicy, "apis/"+name, "policy",
				obj{"value": "<policies><inbound><base />" + policy + "</inbound></policies>", "format": "xml"}))
		}
	}
	restAPI("items", "http://127.0.0.1:1/v1", `<set-header name="X-Stamp" exists-action="override"><value>on the loop</value></set-header>`)
	restAPI("limited", "http://127.0.0.1:1/v1", `<rate-limit calls="100" renewal-period="60" />`)
	restAPI("moved", "http://127.0.0.1:1/v1", `<set-backend-service base-url="http://127.0.0.1:2/v2" />`)
	restAPI("secure", "https://127.0.0.1:1/v1", "")
	ents = append(ents,
		ent(t, configwire.KindAPI, "", "chat", obj{"displayName": "chat", "path": "chat", "type": "websocket",
			"serviceUrl": "ws://127.0.0.1:1/chat", "protocols": []string{"ws"}}),
		ent(t, configwire.KindOperation, "apis/chat", "onHandshake", obj{"displayName": "onHandshake", "method": "GET", "urlTemplate": "/"}),
		configwire.Entity{Kind: configwire.KindGatewayAPI, Parent: "gateways/gw1", Name: "chat", Revision: 1})
	sub := ent(t, configwire.KindSubscription, "", "alice", obj{"scope": svcARM + "/apis", "state": "active", "displayName": "alice"})
	sub.KeyHashes = []string{configwire.KeyHash(goodKey)}
	ents = append(ents, sub)
	c, err := compiled.NewBuilder(pipeline.Env{Counters: ratecount.NewMemory()}).Load(configwire.Snapshot{
		ServiceID: "svc-id", Service: "svc", Gateway: "gw1", Revision: 7, Entities: ents})
	if err != nil {
		t.Fatal(err)
	}
	var cfg atomic.Pointer[compiled.Config]
	cfg.Store(c)
	h := traffic.New(&cfg, traffic.Options{})

	request := func(path, key string) *http.Request {
		r := httptest.NewRequest("GET", "http://gw.example"+path, nil)
		r.RemoteAddr = "192.0.2.7:5000"
		if key != "" {
			r.Header.Set("Ocp-Apim-Subscription-Key", key)
		}
		return r
	}
	t.Run("proxied from the loop", func(t *testing.T) {
		w := httptest.NewRecorder()
		call, ok := h.ServeLoop(w, request("/items/widgets/7?x=1", goodKey))
		if !ok || call == nil {
			t.Fatalf("ok %v, call %v: want a call", ok, call)
		}
		out := call.Request
		if got := out.URL.String(); got != "http://127.0.0.1:1/v1/widgets/7?x=1" {
			t.Errorf("URL %s", got)
		}
		if out.Header.Get("X-Stamp") != "on the loop" || out.Header.Get("Ocp-Apim-Subscription-Key") != "" ||
			out.Header.Get("X-Forwarded-For") != "192.0.2.7" {
			t.Errorf("header to the backend: %v", out.Header)
		}
		if w.Header().Get(traffic.HeaderCorrelationID) == "" {
			t.Error("no correlation id among the answer's fields")
		}
		// A call that got no answer is answered as net/http's path answers it.
		fw := httptest.NewRecorder()
		call.Result.Failed(fw, errors.New("connection refused"))
		var body struct {
			StatusCode int    `json:"statusCode"`
			Message    string `json:"message"`
		}
		if fw.Code != http.StatusBadGateway || json.Unmarshal(fw.Body.Bytes(), &body) != nil || body.StatusCode != 502 {
			t.Errorf("failed call answered %d %s", fw.Code, fw.Body)
		}
	})
	for _, tc := range []struct {
		name, path, key string
		status          int
	}{
		{"no key", "/items/widgets/7", "", http.StatusUnauthorized},
		{"wrong key", "/items/widgets/7", "nope", http.StatusUnauthorized},
		{"no operation", "/items/gadgets/7", goodKey, http.StatusNotFound},
		{"no API", "/nothing", goodKey, http.StatusNotFound},
		{"health probe", traffic.HealthPath, "", http.StatusOK},
	} {
		t.Run("answered on the loop: "+tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			call, ok := h.ServeLoop(w, request(tc.path, tc.key))
			if !ok || call != nil || w.Code != tc.status {
				t.Errorf("ok %v, call %v, status %d; want the answer %d", ok, call, w.Code, tc.status)
			}
		})
	}
	for _, tc := range []struct{ name, path string }{
		{"a policy that may wait", "/limited/widgets/7"},
		{"a policy that changes the backend", "/moved/widgets/7"},
		{"an https backend", "/secure/widgets/7"},
		{"a WebSocket API", "/chat"},
	} {
		t.Run("declined: "+tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			call, ok := h.ServeLoop(w, request(tc.path, goodKey))
			if ok || call != nil || w.Body.Len() != 0 || w.Code != http.StatusOK {
				t.Errorf("ok %v, call %v, answer %d %q; want it declined with nothing written", ok, call, w.Code, w.Body)
			}
		})
	}
	// The declined rate-limited request was not counted: net/http counts it once.
	w := httptest.NewRecorder()
	h.ServeHTTP(w, request("/limited/widgets/7", goodKey))
	if w.Code != http.StatusBadGateway { // the backend is not there; the limit let it through
		t.Errorf("the rate-limited API through ServeHTTP: %d", w.Code)
	}
}
