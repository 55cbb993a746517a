package busauth_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/management/internal/busauth"
)

var (
	nodeA = busauth.Identity{ServiceID: "0b7c6f1e-2d7a-4c1e-9a57-1f0e6c1d2a3b", Gateway: "edge"}
	nodeB = busauth.Identity{ServiceID: "5f0c9a4e-8f6b-4b1a-b1f2-3c4d5e6f7a8b", Gateway: "edge"}
)

func TestNodeCounters(t *testing.T) {
	t.Parallel()
	b := newTestBus(t, 0)
	b.admit("tok-a", nodeA)
	c, err := b.connect(t, "tok-a", nodeA)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(c.nc)
	kv, err := js.CreateOrUpdateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "gatehouse_rates", History: 1, Storage: jetstream.MemoryStorage, LimitMarkerTTL: time.Second})
	if err != nil {
		for len(c.errs) > 0 {
			t.Log(<-c.errs)
		}
		t.Fatal(err)
	}
	_ = kv
}
