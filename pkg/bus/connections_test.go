package bus_test

import (
	"testing"

	"gatehouse.dev/pkg/bus"
)

func TestConnectionsSubject(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ service, want string }{
		{"0b7c6f1e-2d7a-4c1e-9a57-1f0e6c1d2a3b", "gatehouse.connections.0b7c6f1e-2d7a-4c1e-9a57-1f0e6c1d2a3b"},
		{"a.b>", "gatehouse.connections.a~2Eb~3E"},
		{"", "gatehouse.connections.~"},
	} {
		if got := bus.ConnectionsSubject(tc.service); got != tc.want {
			t.Errorf("ConnectionsSubject(%q) = %q, want %q", tc.service, got, tc.want)
		}
	}
}
