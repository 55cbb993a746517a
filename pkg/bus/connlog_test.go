package bus_test

import (
	"testing"

	"gatehouse.dev/pkg/bus"
)

func TestConnectionLogSubject(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ service, gateway, want string }{
		{"svc", "edge", "gatehouse.connlog.svc.edge"},
		{"svc", "eu.west*>", "gatehouse.connlog.svc.eu~2Ewest~2A~3E"},
		{"", "", "gatehouse.connlog.~.~"},
	} {
		if got := bus.ConnectionLogSubject(tc.service, tc.gateway); got != tc.want {
			t.Errorf("ConnectionLogSubject(%q, %q) = %q, want %q", tc.service, tc.gateway, got, tc.want)
		}
	}
}
