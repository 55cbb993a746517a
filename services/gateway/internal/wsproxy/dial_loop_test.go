//go:build linux

package wsproxy_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"testing"

	"gatehouse.dev/gateway/internal/wsproxy"
)

// TestLoopDialDeniedNameNotResolved: as egress.Dialer.DialContext, a dial from the loops
// decides the name's rules before it looks the name up: a denied name is refused as
// denied, and never resolved.
func TestLoopDialDeniedNameNotResolved(t *testing.T) {
	if testEngine == nil {
		t.Skip("the loops dial only with the loop engine")
	}
	denied := errors.New("denied by policy")
	var asked []string
	u, _ := url.Parse("ws://blocked.invalid:80/")
	_, _, err := wsproxy.Dial(context.Background(), wsproxy.DialRequest{URL: u, Engine: testEngine, Timeout: waitFor,
		Dial: func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("Dial used") },
		Allow: func(host string, ap netip.AddrPort) error {
			asked = append(asked, host+" "+ap.String())
			if host == "blocked.invalid" {
				return denied
			}
			return nil
		}})
	if !errors.Is(err, denied) {
		t.Fatalf("dial of a denied name: %v (Allow asked %q); want the policy's refusal, before any lookup", err, asked)
	}
}
