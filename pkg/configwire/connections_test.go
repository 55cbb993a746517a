package configwire_test

import (
	"strings"
	"testing"

	"gatehouse.dev/pkg/configwire"
)

func TestConnectionsRequestValidate(t *testing.T) {
	t.Parallel()
	closeSub := func(code uint16, reason string) configwire.ConnectionsRequest {
		return configwire.ConnectionsRequest{Op: configwire.ConnectionsClose,
			Filter: configwire.ConnectionFilter{Subscription: "alice"}, Code: code, Reason: reason}
	}
	for _, tc := range []struct {
		name string
		req  configwire.ConnectionsRequest
		ok   bool
	}{
		{"list everything", configwire.ConnectionsRequest{Op: configwire.ConnectionsList}, true},
		{"list by api", configwire.ConnectionsRequest{Op: configwire.ConnectionsList, Filter: configwire.ConnectionFilter{API: "echo"}}, true},
		{"close by id", configwire.ConnectionsRequest{Op: configwire.ConnectionsClose,
			Filter: configwire.ConnectionFilter{ID: "c1"}, Code: configwire.AdminCloseCode, Reason: configwire.AdminCloseReason}, true},
		{"close a subscription's", closeSub(1008, "bye"), true},
		{"close with an application code", closeSub(4000, ""), true},
		{"close everything", configwire.ConnectionsRequest{Op: configwire.ConnectionsClose, Code: 1008}, false},
		{"close by api alone", configwire.ConnectionsRequest{Op: configwire.ConnectionsClose,
			Filter: configwire.ConnectionFilter{API: "echo"}, Code: 1008}, false},
		{"reserved close code", closeSub(1006, ""), false},
		{"no close code", closeSub(0, ""), false},
		{"reason too long", closeSub(1008, strings.Repeat("x", 124)), false},
		{"unknown op", configwire.ConnectionsRequest{Op: "drop"}, false},
		{"filter too long", configwire.ConnectionsRequest{Op: configwire.ConnectionsList,
			Filter: configwire.ConnectionFilter{API: strings.Repeat("a", 257)}}, false},
		{"filter not UTF-8", configwire.ConnectionsRequest{Op: configwire.ConnectionsList,
			Filter: configwire.ConnectionFilter{Node: "\xff"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.req.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tc.ok)
			}
		})
	}
}
