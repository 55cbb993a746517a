package compiled

import (
	"fmt"
	"testing"

	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/pipeline"
)

// bigSnapshot is a service of apis WebSocket APIs (each with onHandshake and an API policy,
// ten to a product, every product with a policy) and subs subscriptions with two keys each,
// scoped to products, APIs and all APIs in turn.
func bigSnapshot(apis, subs int) configwire.Snapshot {
	snap := configwire.Snapshot{ServiceID: testServiceID, Service: "svc", Gateway: "gw1", Revision: testRevision}
	add := func(e ...configwire.Entity) { snap.Entities = append(snap.Entities, e...) }
	add(ent(configwire.KindGateway, "", "gw1", obj{}), policyEnt("", "X-Global", "g"))
	for i := range apis {
		name, product := fmt.Sprintf("api-%d", i), fmt.Sprintf("product-%d", i/10)
		if i%10 == 0 {
			add(productEnt(product, true), policyEnt("products/"+product, "X-Product", product))
		}
		add(apiEnt(name, name, "websocket", nil), opEnt(name, "onHandshake", "GET", "/"), policyEnt("apis/"+name, "X-Api", name),
			link(configwire.KindProductAPI, "products/"+product, name), link(configwire.KindGatewayAPI, "gateways/gw1", name))
	}
	for i := range subs {
		scope := fmt.Sprintf("/products/product-%d", i%(apis/10))
		switch i % 3 {
		case 1:
			scope = fmt.Sprintf("/apis/api-%d", i%apis)
		case 2:
			scope = "/apis"
		}
		add(subEnt(fmt.Sprintf("sub-%d", i), scope, "active", fmt.Sprintf("key-%d-a", i), fmt.Sprintf("key-%d-b", i)))
	}
	return snap
}

func BenchmarkLoad(b *testing.B) {
	snap := bigSnapshot(1000, 200_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewBuilder(pipeline.Env{}).Load(snap); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplySubscription is the common change at scale: one subscription's key
// regenerated among 200k subscriptions and 1k APIs. It must cost microseconds, not a Load.
func BenchmarkApplySubscription(b *testing.B) {
	builder, _ := load(b, bigSnapshot(1000, 200_000))
	changes := make([]configwire.Change, 1024)
	for i := range changes {
		changes[i] = change(0, put(subEnt(fmt.Sprintf("sub-%d", i*181), "/apis", "active", fmt.Sprintf("key-%d-new", i), fmt.Sprintf("key-%d-b", i*181))))
	}
	rev := builder.Revision()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		rev++
		ch := changes[i%len(changes)]
		ch.Revision = rev
		if _, err := builder.Apply(ch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyAPIPolicy is an API policy change among 1k APIs: one API recompiles.
func BenchmarkApplyAPIPolicy(b *testing.B) {
	builder, _ := load(b, bigSnapshot(1000, 1000))
	rev := builder.Revision()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		rev++
		name := fmt.Sprintf("api-%d", i%1000)
		if _, err := builder.Apply(change(rev, put(policyEnt("apis/"+name, "X-Api", fmt.Sprint(i))))); err != nil {
			b.Fatal(err)
		}
	}
}

// TestApplyCopiesLittle checks structurally what the benchmarks measure: a change copies only
// the index nodes it touches and shares the rest with the previous Config.
func TestApplyCopiesLittle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		item configwire.Item
		// maximum copied: middle nodes and leaves of the key index, shards of each API map
		mids, leaves, apiShards int
	}{
		{"key regenerated", put(subEnt("sub-7", "/apis", "active", "key-7-new", "key-7-b")), 3, 3, 0}, // old a, b; new
		{"subscription deleted", del(configwire.KindSubscription, "", "sub-8"), 2, 2, 0},
		{"API moved", put(apiEnt("api-3", "moved", "websocket", nil)), 0, 0, 2},
		{"API policy", put(policyEnt("apis/api-4", "X-Api", "v2")), 0, 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, before := load(t, bigSnapshot(100, 4000))
			after, err := b.Apply(change(testRevision+1, tc.item))
			if err != nil {
				t.Fatal(err)
			}
			mids, leaves := 0, 0
			for i, m := range after.subs.top {
				if m == before.subs.top[i] {
					continue
				}
				mids++
				for j, l := range m {
					if before.subs.top[i] == nil || l != before.subs.top[i][j] {
						leaves++
					}
				}
			}
			if mids > tc.mids || leaves > tc.leaves {
				t.Errorf("key index: %d middle nodes and %d leaves copied, want at most %d and %d", mids, leaves, tc.mids, tc.leaves)
			}
			for name, m := range map[string][2]*cowMap[*API]{"apis": {before.apis, after.apis}, "byName": {before.byName, after.byName}} {
				copied := 0
				for i := range m[0].shards {
					if !sameMap(m[0].shards[i], m[1].shards[i]) {
						copied++
					}
				}
				if copied > tc.apiShards {
					t.Errorf("%s: %d shards copied, want at most %d", name, copied, tc.apiShards)
				}
			}
		})
	}
}

// sameMap reports whether a and b are the same map (not merely equal).
func sameMap[K comparable, V any](a, b map[K]V) bool {
	return fmt.Sprintf("%p", a) == fmt.Sprintf("%p", b)
}
