package natsembed

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestAttackAnonymousRefused: the embedded bus is closed (issue 12). A client without
// credentials, with a wrong password, or with management's user name and no password is
// refused; nobody serves the callout here, so a token is refused too, when the server's wait ends.
func TestAttackAnonymousRefused(t *testing.T) {
	t.Parallel()
	s, err := Start(t.Context(), Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	for _, tc := range []struct {
		name string
		opt  nats.Option
	}{
		{"anonymous", func(*nats.Options) error { return nil }},
		{"wrong password", nats.UserInfo(s.Auth().User, "guess")},
		{"system user, wrong password", nats.UserInfo(s.Auth().SystemUser, "")},
		{"token, no callout service", nats.Token("GatewayKey x&202601010000&sig")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nc, err := nats.Connect(s.ClientURL(), tc.opt, nats.NoReconnect(), nats.Timeout(2*authTimeout))
			if err == nil {
				nc.Close()
				t.Fatalf("connected")
			}
		})
	}
	nc, err := nats.Connect(s.ClientURL(), s.UserInfo(), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatalf("management's user: %v", err)
	}
	nc.Close()
}
