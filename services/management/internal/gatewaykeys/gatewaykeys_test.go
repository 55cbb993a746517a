package gatewaykeys_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/gatewaykeys"
	"gatehouse.dev/management/internal/mgmttest"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/testwait"
)

// fixture is a management with a service holding gateway gw, and tokens of both its keys.
type fixture struct {
	env                *mgmttest.Env
	gw                 string // the gateway's ARM path
	serviceID          string
	primary, secondary string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := mgmttest.Start(t, mgmttest.Options{NoRelay: true})
	svc := env.CreateService(t, "gwkeys-sub", "rg", "gwkeys")
	f := &fixture{env: env, gw: svc + "/gateways/gw"}
	env.Must(t, []int{201}, http.MethodPut, f.gw, map[string]any{"properties": map[string]any{"locationData": map[string]any{"name": "Here"}}})
	s, err := env.Catalog.GetService(t.Context(), catalog.ServiceRef{Subscription: "gwkeys-sub", ResourceGroup: "rg", Name: "gwkeys"})
	if err != nil {
		t.Fatal(err)
	}
	f.serviceID = s.ID
	f.primary, f.secondary = f.token(t, "primary"), f.token(t, "secondary")
	return f
}

func (f *fixture) token(t *testing.T, keyType string) string {
	t.Helper()
	r := f.env.Must(t, []int{200}, http.MethodPost, f.gw+"/generateToken",
		map[string]any{"keyType": keyType, "expiry": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	tok, _ := r.JSON()["value"].(string)
	return tok
}

// nodeKey is the node key the snapshot call hands a node presenting token.
func (f *fixture) nodeKey(t *testing.T, token string) configwire.NodeKey {
	t.Helper()
	r := f.env.Must(t, []int{200}, http.MethodGet, configwire.SnapshotPath, nil, "Authorization", "GatewayKey "+token)
	k, err := configwire.ParseNodeKey(r.Header.Get(configwire.NodeKeyHeader))
	if err != nil {
		t.Fatalf("the snapshot's node key: %v", err)
	}
	return k
}

const subject = "gatehouse.heartbeat.test"

// verify checks a message authenticated with key as from a node of gw, with c.
func (f *fixture) verify(c *gatewaykeys.Cache, key configwire.NodeKey, gateway string) error {
	data := []byte(`{"nodeId":"n1"}`)
	return c.Verify(subject, data, key.Sign(subject, data), f.serviceID, gateway)
}

// TestAttackRegeneratedGatewayKey: the node key handed with a snapshot is bound to the
// gateway key that signed the caller's token; once that key is regenerated, messages
// authenticated with it no longer verify, on this replica and on another one following the
// notifications, while the node key of the other gateway key still does. Deleting the gateway
// ends both.
func TestAttackRegeneratedGatewayKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	replica, err := gatewaykeys.Open(ctx, f.env.Pool, f.env.Catalog, f.env.Keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- replica.Follow(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Follow = %v", err)
		}
	})
	caches := map[string]*gatewaykeys.Cache{"this replica": f.env.App.NodeAuth(), "another replica": replica}

	primary, secondary := f.nodeKey(t, f.primary), f.nodeKey(t, f.secondary)
	if primary.String() == secondary.String() {
		t.Fatal("the tokens of both gateway keys get the same node key")
	}
	for name, c := range caches {
		// The gateway reaches a replica's Cache through a notification of its creation. Gateway
		// names compare case-insensitively, as ARM names do.
		testwait.Until(t, 10*time.Second, name+" verifying the node keys from the snapshot call", func() bool {
			return f.verify(c, primary, "GW") == nil && f.verify(c, secondary, "gw") == nil
		})
		data := []byte("x")
		if err := c.Verify(subject, data, "", f.serviceID, "gw"); !errors.Is(err, configwire.ErrUnsigned) {
			t.Errorf("%s: no authentication: %v, want unsigned", name, err)
		}
		if err := f.verify(c, primary, "other"); !errors.Is(err, configwire.ErrForged) {
			t.Errorf("%s: as a node of a gateway that does not exist: %v, want forged", name, err)
		}
	}

	f.env.Must(t, []int{204}, http.MethodPost, f.gw+"/regenerateKey", map[string]any{"keyType": "primary"})
	for name, c := range caches {
		testwait.Until(t, 10*time.Second, name+" refusing the node key of the regenerated key", func() bool {
			return errors.Is(f.verify(c, primary, "gw"), configwire.ErrForged)
		})
		if err := f.verify(c, secondary, "gw"); err != nil {
			t.Errorf("%s: the node key of the key not regenerated: %v", name, err)
		}
	}
	// A new token of the regenerated key gets a node key that verifies.
	fresh := f.nodeKey(t, f.token(t, "primary"))
	for name, c := range caches {
		if err := f.verify(c, fresh, "gw"); err != nil {
			t.Errorf("%s: the node key of a token of the new key: %v", name, err)
		}
	}

	f.env.Must(t, []int{200}, http.MethodDelete, f.gw, nil, "If-Match", "*")
	for name, c := range caches {
		testwait.Until(t, 10*time.Second, name+" refusing the node keys of a deleted gateway", func() bool {
			return f.verify(c, secondary, "gw") != nil && f.verify(c, fresh, "gw") != nil
		})
	}
}

// TestMissedNotification: a regeneration made while a Cache's listening connection is down
// still reaches it, since it reads every gateway again once it listens again.
func TestMissedNotification(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c, err := gatewaykeys.Open(ctx, f.env.Pool, f.env.Catalog, f.env.Keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := f.nodeKey(t, f.primary)
	// The Cache is not following notifications yet: a regeneration now is missed.
	f.env.Must(t, []int{204}, http.MethodPost, f.gw+"/regenerateKey", map[string]any{"keyType": "primary"})
	if err := f.verify(c, key, "gw"); err != nil {
		t.Fatalf("the Cache knew of the regeneration without following: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Follow(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Follow = %v", err)
		}
	})
	testwait.Until(t, 10*time.Second, "the Cache refusing the node key of the key regenerated before it listened", func() bool {
		return f.verify(c, key, "gw") != nil
	})
}
