package node

import (
	"net"
	"os"
	"testing"
)

func TestListenerURL(t *testing.T) {
	t.Parallel()
	// A listener on every interface is advertised under the machine's name when it resolves.
	host := reachableHostname()
	if name, _ := os.Hostname(); host != name && host != "127.0.0.1" {
		t.Fatalf("reachableHostname() = %q, want %q or 127.0.0.1", host, name)
	}
	for _, tc := range []struct {
		addr string
		tls  bool
		want string
	}{
		{"127.0.0.1:8081", false, "ws://127.0.0.1:8081"},
		{"0.0.0.0:8081", false, "ws://" + host + ":8081"},
		{"[::]:8443", true, "wss://" + host + ":8443"},
		{"[::1]:8081", false, "ws://[::1]:8081"},
		{"10.1.2.3:80", true, "wss://10.1.2.3:80"},
	} {
		addr, err := net.ResolveTCPAddr("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := listenerURL(addr, tc.tls); got != tc.want {
			t.Errorf("listenerURL(%s, tls=%v) = %q, want %q", tc.addr, tc.tls, got, tc.want)
		}
	}
}
