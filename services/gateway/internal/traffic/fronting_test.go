package traffic

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/pkg/apierror"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/pipeline"
)

// entity is an entity of kind with the properties props.
func entity(t *testing.T, kind, parent, name string, props map[string]any) configwire.Entity {
	t.Helper()
	raw, err := json.Marshal(props)
	if err != nil {
		t.Fatal(err)
	}
	return configwire.Entity{Kind: kind, Parent: parent, Name: name, Properties: raw, Revision: 1}
}

// TestClientCertificateHostFronting serves a wss API on a gateway whose hostname
// mtls.example.test requires a client certificate and open.example.test does not. A client
// that connected without a certificate (as with the SNI open.example.test) and names
// mtls.example.test in its Host header is refused 421 before the API is reached; with a
// certificate, or with the Host open.example.test, the request reaches the API (its
// upgrade check answers 400).
func TestClientCertificateHostFronting(t *testing.T) {
	t.Parallel()
	snap := configwire.Snapshot{ServiceID: "svc-id", Service: "svc", Gateway: "gw1", Revision: 1, Entities: []configwire.Entity{
		entity(t, configwire.KindGateway, "", "gw1", map[string]any{}),
		entity(t, configwire.KindAPI, "", "echo", map[string]any{"displayName": "echo", "path": "echo", "type": "websocket",
			"serviceUrl": "ws://127.0.0.1:1", "protocols": []string{"wss"}, "subscriptionRequired": false}),
		entity(t, configwire.KindOperation, "apis/echo", "onHandshake", map[string]any{"displayName": "onHandshake", "method": "GET", "urlTemplate": "/"}),
		{Kind: configwire.KindGatewayAPI, Parent: "gateways/gw1", Name: "echo", Revision: 1},
		entity(t, configwire.KindGatewayHostname, "gateways/gw1", "mtls", map[string]any{"hostname": "mtls.example.test", "negotiateClientCertificate": true}),
		entity(t, configwire.KindGatewayHostname, "gateways/gw1", "open", map[string]any{"hostname": "open.example.test"}),
	}}
	cfg, err := compiled.NewBuilder(pipeline.Env{}).Load(snap)
	if err != nil {
		t.Fatal(err)
	}
	var current atomic.Pointer[compiled.Config]
	current.Store(cfg)
	srv := httptest.NewUnstartedServer(New(&current, Options{}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	ca := issue(t, "ca", nil)
	withCert := srv.Client().Transport.(*http.Transport).Clone()
	withCert.TLSClientConfig.Certificates = []tls.Certificate{issue(t, "client", &ca)}
	for _, tc := range []struct {
		name string
		host string
		rt   http.RoundTripper
		want int
	}{
		{"no certificate, Host of the mTLS hostname", "mtls.example.test", srv.Client().Transport, http.StatusMisdirectedRequest},
		{"no certificate, Host with a port and upper case", "MTLS.Example.Test.:443", srv.Client().Transport, http.StatusMisdirectedRequest},
		{"no certificate, Host of the open hostname", "open.example.test", srv.Client().Transport, http.StatusBadRequest},
		{"certificate, Host of the mTLS hostname", "mtls.example.test", withCert, http.StatusBadRequest},
	} {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/echo", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tc.host
		resp, err := tc.rt.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var body apierror.GatewayBody
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || err != nil || body.StatusCode != tc.want {
			t.Errorf("%s: %d %+v (%v), want %d with the gateway's error body", tc.name, resp.StatusCode, body, err, tc.want)
		}
	}
}
