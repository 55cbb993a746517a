package configwire_test

import (
	"strings"
	"testing"

	"gatehouse.dev/pkg/configwire"
)

func TestHeartbeatValidate(t *testing.T) {
	t.Parallel()
	ok := func() configwire.Heartbeat {
		return configwire.Heartbeat{NodeID: "n1", ServiceID: "s1", Gateway: "edge", Revision: 3, Connections: 2, Healthy: true}
	}
	for _, tc := range []struct {
		name    string
		edit    func(h *configwire.Heartbeat)
		wantErr string
	}{
		{"valid", func(*configwire.Heartbeat) {}, ""},
		{"no node id", func(h *configwire.Heartbeat) { h.NodeID = "" }, "nodeId is empty"},
		{"no service", func(h *configwire.Heartbeat) { h.ServiceID = "" }, "serviceId is empty"},
		{"no gateway", func(h *configwire.Heartbeat) { h.Gateway = "" }, "gateway is empty"},
		{"long error", func(h *configwire.Heartbeat) { h.LastError = strings.Repeat("x", configwire.MaxHeartbeatErrorBytes+1) }, "lastError is longer"},
		{"error at the limit", func(h *configwire.Heartbeat) { h.LastError = strings.Repeat("x", configwire.MaxHeartbeatErrorBytes) }, ""},
		{"bad UTF-8", func(h *configwire.Heartbeat) { h.Hostname = "\xff" }, "hostname is not valid UTF-8"},
		{"negative connections", func(h *configwire.Heartbeat) { h.Connections = -1 }, "negative"},
		{"negative revision", func(h *configwire.Heartbeat) { h.Revision = -1 }, "negative"},
		{"ws URL", func(h *configwire.Heartbeat) { h.URL = "ws://127.0.0.1:8081" }, ""},
		{"wss URL with a path prefix", func(h *configwire.Heartbeat) { h.URL = "wss://gw.example.com/edge" }, ""},
		{"IPv6 URL", func(h *configwire.Heartbeat) { h.URL = "ws://[::1]:8081" }, ""},
		{"http URL", func(h *configwire.Heartbeat) { h.URL = "http://127.0.0.1:8081" }, "scheme must be ws or wss"},
		{"relative URL", func(h *configwire.Heartbeat) { h.URL = "/edge" }, "scheme must be ws or wss"},
		{"URL without host", func(h *configwire.Heartbeat) { h.URL = "ws:///edge" }, "has no host"},
		{"URL with user information", func(h *configwire.Heartbeat) { h.URL = "ws://user:pw@gw.example.com" }, "user information"},
		{"URL with a query", func(h *configwire.Heartbeat) { h.URL = "ws://gw.example.com/?subscription-key=k" }, "a query"},
		{"URL with a fragment", func(h *configwire.Heartbeat) { h.URL = "ws://gw.example.com/#x" }, "a fragment"},
		{"malformed URL", func(h *configwire.Heartbeat) { h.URL = "ws://gw.example.com:port" }, "node URL"},
		{"long URL", func(h *configwire.Heartbeat) { h.URL = "ws://gw.example.com/" + strings.Repeat("x", 1024) }, "url is longer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := ok()
			tc.edit(&h)
			err := h.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
