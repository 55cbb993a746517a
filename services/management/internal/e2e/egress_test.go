package e2e

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAttackBackendAtOwnListener points APIs at the node's own admin and traffic listeners
// through names and addresses management cannot know are the node's (its random ports, the name
// localhost, 0.0.0.0): management accepts them, and the node refuses the dial after resolution,
// answering as for an unreachable backend and logging why, so its /metrics never reach a client.
func TestAttackBackendAtOwnListener(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	gw := s.startNode(t, "gw1", nodeOptions{})
	_, adminPort, _ := net.SplitHostPort(gw.admin)
	_, trafficPort, _ := net.SplitHostPort(gw.traffic)
	s.wsAPI(t, "own-admin", "own-admin", "ws://localhost:"+adminPort+"/metrics", nil)
	s.wsAPI(t, "own-traffic", "own-traffic", "ws://0.0.0.0:"+trafficPort+"/own-admin", nil)
	s.put(t, "/apis/own-rest", map[string]any{"displayName": "Own REST", "type": "http", "serviceUrl": "http://localhost:" + adminPort,
		"path": "own-rest", "protocols": []string{"http"}})
	s.put(t, "/apis/own-rest/operations/metrics", map[string]any{"displayName": "Metrics", "method": "GET", "urlTemplate": "/metrics"})
	s.must(t, []int{200, 201}, http.MethodPut, "/gateways/gw/apis/own-rest", nil)
	key := s.subscription(t, "all", "/apis", "active")
	header := http.Header{"Ocp-Apim-Subscription-Key": {key}}

	for _, path := range []string{"/own-admin", "/own-traffic"} {
		eventually(t, 15*time.Second, func() string {
			if st, _, _ := handshake(t, gw.ws(path), header); st == http.StatusNotFound || st == http.StatusUnauthorized {
				return path + " or the key not configured yet"
			}
			return ""
		})
		st, hdr, body := handshake(t, gw.ws(path), header)
		wantGatewayError(t, st, hdr, body, http.StatusBadGateway, "Backend service unavailable")
	}
	var st int
	var body string
	eventually(t, 15*time.Second, func() string {
		req, _ := http.NewRequest(http.MethodGet, gw.http("/own-rest/metrics"), nil)
		req.Header = header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err.Error()
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		st, body = resp.StatusCode, string(raw)
		if st == http.StatusNotFound || st == http.StatusUnauthorized {
			return "own-rest or the key not configured yet"
		}
		return ""
	})
	if st != http.StatusBadGateway || strings.Contains(body, "go_goroutines") || strings.Contains(body, "gatehouse_") {
		t.Errorf("REST API at the admin listener: %d %.300s, want 502 without metrics", st, body)
	}
	if n := strings.Count(gw.log.String(), "gateway node's own listeners"); n < 3 {
		t.Errorf("the node logged %d refusals naming its own listeners, want at least 3:\n%s", n, gw.log)
	}
}
