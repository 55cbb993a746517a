package compiled

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/pkg/configwire"
)

// recompiled lists the names of the APIs whose compiled form differs between two Configs
// (added, removed or rebuilt).
func recompiled(before, after *Config) []string {
	var out []string
	for name, a := range before.byName.all() {
		if after.byName.get(name) != a {
			out = append(out, name)
		}
	}
	for name := range after.byName.all() {
		if before.byName.get(name) == nil {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// line returns the line of v that starts with prefix, or "".
func line(v []string, prefix string) string {
	for _, l := range v {
		if len(l) >= len(prefix) && l[:len(prefix)] == prefix {
			return l
		}
	}
	return ""
}

func TestApply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		items []configwire.Item
		// want maps probe prefixes of view to their expected lines ("" = the probe vanished).
		want map[string]string
		// recompiled are the APIs that must be rebuilt; all others must be shared.
		recompiled []string
	}{
		{
			name:  "subscription added",
			items: []configwire.Item{put(subEnt("new", "/apis/chat", "active", "key-new", "key-new-2"))},
			want: map[string]string{
				"key key-new →":   "key key-new → new active apis/chat chat:true/- orders:false/- shop:false/- public:false/-",
				"key key-new-2 →": "key key-new-2 → new active apis/chat chat:true/- orders:false/- shop:false/- public:false/-",
				"revision":        "revision 11 apis 4 keys 9",
			},
		},
		{
			name:  "subscription deleted, named in another case",
			items: []configwire.Item{del(configwire.KindSubscription, "", "starter-sub")},
			want: map[string]string{
				"key key-starter-1 →": "key key-starter-1 → none",
				"key key-starter-2 →": "key key-starter-2 → none",
				"revision":            "revision 11 apis 4 keys 5",
			},
		},
		{
			name:  "subscription suspended",
			items: []configwire.Item{put(subEnt("all", "/apis", "suspended", "key-all-1", "key-all-2"))},
			want: map[string]string{
				"key key-all-1 →": "key key-all-1 → all suspended apis chat:true/- orders:true/- shop:true/- public:true/-",
			},
		},
		{
			name:  "subscription key regenerated",
			items: []configwire.Item{put(subEnt("all", "/apis", "active", "key-new", "key-all-2"))},
			want: map[string]string{
				"key key-all-1 →": "key key-all-1 → none",
				"key key-all-2 →": "key key-all-2 → all active apis chat:true/- orders:true/- shop:true/- public:true/-",
				"key key-new →":   "key key-new → all active apis chat:true/- orders:true/- shop:true/- public:true/-",
				"revision":        "revision 11 apis 4 keys 7",
			},
		},
		{
			name:  "subscription moved to another product",
			items: []configwire.Item{put(subEnt("Starter-Sub", "/products/free", "active", "key-starter-1"))},
			want: map[string]string{
				"key key-starter-1 →": "key key-starter-1 → Starter-Sub active products/free chat:false/- orders:false/- shop:false/- public:true/free",
				"key key-starter-2 →": "key key-starter-2 → none",
			},
		},
		{
			name:  "user changes do not matter",
			items: []configwire.Item{put(ent(configwire.KindUser, "", "u1", obj{"email": "a@b.c"})), del(configwire.KindUser, "", "u2")},
			want:  map[string]string{"revision": "revision 11 apis 4 keys 7"},
		},
		{
			name:  "API path changed",
			items: []configwire.Item{put(apiEnt("shop", "new/path", "http", obj{"subscriptionRequired": false}))},
			want: map[string]string{
				"http shop/x →":     `http shop/x →  ""`,
				"http new/path/x →": `http new/path/x → shop "x"`,
			},
			recompiled: []string{"shop"},
		},
		{
			name:  "APIs swap paths",
			items: []configwire.Item{put(apiEnt("chat", "other2", "websocket", nil)), put(apiEnt("public", "chat", "websocket", nil))},
			want: map[string]string{
				"ws chat →": "ws chat → public",
				"revision":  "revision 11 apis 4 keys 7",
			},
			recompiled: []string{"chat", "public"},
		},
		{
			name: "API deleted with what depends on it",
			items: []configwire.Item{
				del(configwire.KindOperation, "apis/chat", "onHandshake"),
				del(configwire.KindPolicy, "apis/chat", "policy"),
				del(configwire.KindProductAPI, "products/starter", "chat"),
				del(configwire.KindGatewayAPI, "gateways/gw1", "chat"),
				del(configwire.KindGatewayAPI, "gateways/gw2", "chat"),
				del(configwire.KindSubscription, "", "chat-only"),
				del(configwire.KindAPI, "", "chat"),
			},
			want: map[string]string{
				"ws chat →":      "ws chat → ",
				"key key-chat →": "key key-chat → none",
				"revision":       "revision 11 apis 3 keys 6",
			},
			recompiled: []string{"chat"},
		},
		{
			name:  "operation added",
			items: []configwire.Item{put(opEnt("shop", "post", "POST", "/{*rest}"))},
			want: map[string]string{
				"op shop/post POST /{*rest}:": "op shop/post POST /{*rest}: [X-Global=g]",
			},
			recompiled: []string{"shop"},
		},
		{
			name:  "operation policy changed",
			items: []configwire.Item{put(policyEnt("apis/chat/operations/onHandshake", "X-Op", "hs2"))},
			want: map[string]string{
				"op chat/onHandshake GET /:":      "op chat/onHandshake GET /: [X-Api=hello X-Global=g X-Op=hs2]",
				"op chat/onHandshake in starter:": "op chat/onHandshake in starter: [X-Api=hello X-Global=g X-Op=hs2 X-Product=starter]",
			},
			recompiled: []string{"chat"},
		},
		{
			name:  "product policy changed recompiles only the product's APIs",
			items: []configwire.Item{put(policyEnt("products/starter", "X-Product", "v2"))},
			want: map[string]string{
				"op chat/onHandshake in starter:": "op chat/onHandshake in starter: [X-Api=hello X-Global=g X-Op=hs X-Product=v2]",
				"op chat/onHandshake GET /:":      "op chat/onHandshake GET /: [X-Api=hello X-Global=g X-Op=hs]",
			},
			recompiled: []string{"chat", "orders"},
		},
		{
			name:  "product policy deleted",
			items: []configwire.Item{del(configwire.KindPolicy, "products/starter", "policy")},
			want: map[string]string{
				"op chat/onHandshake in starter:": "op chat/onHandshake in starter: [X-Api=hello X-Global=g X-Op=hs]",
			},
			recompiled: []string{"chat", "orders"},
		},
		{
			name:  "global policy changed recompiles everything",
			items: []configwire.Item{put(policyEnt("", "X-Global", "g2"))},
			want: map[string]string{
				"op chat/onHandshake GET /:": "op chat/onHandshake GET /: [X-Api=hello X-Global=g2 X-Op=hs]",
				"op shop/any GET /{*rest}:":  "op shop/any GET /{*rest}: [X-Global=g2]",
			},
			recompiled: []string{"chat", "orders", "public", "shop"},
		},
		{
			name:  "named value changed",
			items: []configwire.Item{put(namedValue("greeting-nv", "Greeting", "hi"))},
			want: map[string]string{
				"op chat/onHandshake GET /:": "op chat/onHandshake GET /: [X-Api=hi X-Global=g X-Op=hs]",
			},
			recompiled: []string{"chat", "orders", "public", "shop"},
		},
		{
			name:  "product opened",
			items: []configwire.Item{put(productEnt("starter", false))},
			want: map[string]string{
				"api chat:": "api chat: open=starter required=true",
			},
			recompiled: []string{"chat", "orders"},
		},
		{
			name:  "API removed from a product",
			items: []configwire.Item{del(configwire.KindProductAPI, "products/starter", "chat")},
			want: map[string]string{
				"key key-starter-1 →":             "key key-starter-1 → Starter-Sub active products/starter chat:false/- orders:true/starter shop:false/- public:false/-",
				"op chat/onHandshake in starter:": "",
			},
			recompiled: []string{"chat"},
		},
		{
			name:  "served API added to a served product",
			items: []configwire.Item{put(link(configwire.KindProductAPI, "products/starter", "shop"))},
			want: map[string]string{
				"key key-starter-1 →":     "key key-starter-1 → Starter-Sub active products/starter chat:true/starter orders:true/starter shop:true/starter public:false/-",
				"op shop/any in starter:": "op shop/any in starter: [X-Global=g X-Product=starter]",
			},
			recompiled: []string{"shop"},
		},
		{
			name:  "API of another gateway added to a product",
			items: []configwire.Item{put(link(configwire.KindProductAPI, "products/unknown", "other"))},
			want:  map[string]string{"revision": "revision 11 apis 4 keys 7"},
		},
		{
			name:  "gateway link deleted",
			items: []configwire.Item{del(configwire.KindGatewayAPI, "gateways/GW1", "Chat")},
			want: map[string]string{
				"ws chat →": "ws chat → ",
				"revision":  "revision 11 apis 3 keys 7",
			},
			recompiled: []string{"chat"},
		},
		{
			name: "links of another gateway",
			items: []configwire.Item{
				put(link(configwire.KindGatewayAPI, "gateways/gw2", "shop")),
				del(configwire.KindGatewayAPI, "gateways/gw2", "chat"),
				put(ent(configwire.KindGateway, "", "gw3", obj{})),
			},
			want: map[string]string{"ws chat →": "ws chat → chat", "ws other →": "ws other → "},
		},
		{
			name:  "change of an API this gateway does not serve",
			items: []configwire.Item{put(apiEnt("other", "chat2", "websocket", nil)), put(policyEnt("apis/other", "X", "{{missing}}"))},
			want:  map[string]string{"ws chat2 →": "ws chat2 → "},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, before := load(t, testSnapshot())
			beforeView := view(t, before)
			after, err := b.Apply(change(testRevision+1, tc.items...))
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if b.Current() != after || b.Revision() != testRevision+1 || after.Revision != testRevision+1 {
				t.Fatalf("Current/Revision not advanced: revision %d", b.Revision())
			}
			got := view(t, after)
			for prefix, want := range tc.want {
				if l := line(got, prefix); l != want {
					t.Errorf("%s\n got: %s\nwant: %s", prefix, l, want)
				}
			}
			if diff := cmp.Diff(tc.recompiled, recompiled(before, after)); diff != "" {
				t.Errorf("recompiled APIs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(beforeView, view(t, before)); diff != "" {
				t.Errorf("the Config handed out before Apply changed (-before +after):\n%s", diff)
			}
			// The result is what a full snapshot of the new state compiles to.
			_, full := load(t, b.Export())
			if diff := cmp.Diff(view(t, full), got); diff != "" {
				t.Errorf("incremental result differs from a full Load (-full +incremental):\n%s", diff)
			}
		})
	}
}

func TestApplyResync(t *testing.T) {
	t.Parallel()
	next := func(items ...configwire.Item) configwire.Change { return change(testRevision+1, items...) }
	tests := []struct {
		name string
		ch   configwire.Change
	}{
		{"gap", change(testRevision+2, put(subEnt("new", "/apis", "active", "key-new")))},
		{"another service", configwire.Change{ServiceID: "other", Revision: testRevision + 1}},
		{"API linked to this gateway", next(put(link(configwire.KindGatewayAPI, "gateways/gw1", "other")))},
		{"API linked to this gateway after other items", next(
			put(subEnt("new", "/apis", "active", "key-new")),
			put(policyEnt("", "X-Global", "g2")),
			del(configwire.KindSubscription, "", "all"),
			put(link(configwire.KindGatewayAPI, "gateways/GW1", "other")))},
		{"served API added to an unknown product", next(put(link(configwire.KindProductAPI, "products/gold", "chat")))},
		{"secret named value changed", next(put(configwire.Entity{Kind: configwire.KindNamedValue, Name: "sec", Secret: true,
			Properties: raw(obj{"displayName": "sec", "secret": true})}))},
		{"change too large", next(configwire.Item{Op: configwire.OpResync})},
		{"unknown op", next(configwire.Item{Op: "patch", Entity: subEnt("all", "/apis", "active")})},
		{"unknown kind", next(put(ent("widgets", "", "w1", obj{"size": 1})))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, before := load(t, testSnapshot())
			beforeView := view(t, before)
			if cfg, err := b.Apply(tc.ch); !errors.Is(err, ErrResync) {
				t.Fatalf("Apply = %v, %v; want ErrResync", cfg, err)
			}
			assertUnchanged(t, b, before, beforeView)
		})
	}
}

// assertUnchanged checks that b still holds before as it was, and that its entity state is
// untouched: the next revision applies on top of it as on a fresh Load.
func assertUnchanged(t *testing.T, b *Builder, before *Config, beforeView []string) {
	t.Helper()
	if b.Current() != before || b.Revision() != testRevision {
		t.Fatalf("after a failed Apply: Current replaced or Revision = %d", b.Revision())
	}
	if diff := cmp.Diff(beforeView, view(t, before)); diff != "" {
		t.Errorf("Config changed (-before +after):\n%s", diff)
	}
	ch := change(testRevision+1, put(subEnt("probe", "/apis", "active", "key-new")))
	got, err := b.Apply(ch)
	if err != nil {
		t.Fatalf("Apply after the failure: %v", err)
	}
	fresh, _ := load(t, testSnapshot())
	want, err := fresh.Apply(ch)
	if err != nil {
		t.Fatalf("Apply on a fresh Builder: %v", err)
	}
	if diff := cmp.Diff(view(t, want), view(t, got)); diff != "" {
		t.Errorf("state after the failure differs from a fresh Load (-fresh +got):\n%s", diff)
	}
	if diff := cmp.Diff(len(fresh.Export().Entities), len(b.Export().Entities)); diff != "" {
		t.Errorf("exported entities (-fresh +got):\n%s", diff)
	}
}

// TestApplyFailsClosed checks that a change with a policy or API this node cannot compile is
// applied whole: its subscriptions, keys and links take effect, the APIs it breaks refuse
// requests and are listed in Failures, and the rest serves on (issue 11).
func TestApplyFailsClosed(t *testing.T) {
	t.Parallel()
	refused := "[<refused 500 PolicyCompileFailure>]"
	tests := []struct {
		name  string
		items []configwire.Item
		// want are lines the view must hold after the change; failed the APIs that fail.
		want   []string
		failed []string
	}{
		{"named value in use deleted", []configwire.Item{
			put(subEnt("new", "/apis", "active", "key-new")),
			del(configwire.KindSubscription, "", "all"),
			del(configwire.KindNamedValue, "", "greeting-nv"),
		}, []string{"key key-all-1 → none", "op chat/onHandshake GET /: " + refused, "op chat/onHandshake in starter: " + refused,
			"op orders/latest GET /latest: [X-Global=g X-Secret=s3cr3t]"}, []string{"chat"}},
		{"policy referencing a missing named value", []configwire.Item{
			put(policyEnt("products/starter", "X-Product", "v2")),
			put(policyEnt("apis/shop", "X", "{{missing}}")),
		}, []string{"op orders/latest in starter: [X-Global=g X-Product=v2 X-Secret=s3cr3t]", "op shop/any GET /{*rest}: " + refused}, []string{"shop"}},
		{"policy that does not parse", []configwire.Item{
			put(subEnt("all", "/apis", "suspended", "key-all-1")),
			put(ent(configwire.KindPolicy, "apis/shop", "policy", obj{"value": "<policies><inbound>", "format": "xml"})),
		}, []string{"key key-all-1 → all suspended apis chat:true/- orders:true/- shop:true/- public:true/-", "op shop/any GET /{*rest}: " + refused}, []string{"shop"}},
		{"global policy that does not compile", []configwire.Item{
			put(subEnt("new", "/apis", "active", "key-new")),
			put(ent(configwire.KindPolicy, "", "policy", obj{"value": `<policies><inbound><set-header name="X" exists-action="override"><value>@((((</value></set-header></inbound></policies>`, "format": "xml"})),
		}, []string{"key key-new → new active apis chat:true/- orders:true/- shop:true/- public:true/-", "op shop/any GET /{*rest}: " + refused,
			"op public/get GET /{*rest}: " + refused}, []string{"chat", "orders", "public", "shop"}},
		{"API with a bad serviceUrl after a path change", []configwire.Item{
			put(apiEnt("chat", "chat-moved", "websocket", nil)),
			del(configwire.KindProductAPI, "products/starter", "orders"),
			put(apiEnt("shop", "shop", "http", obj{"serviceUrl": "http://[::1"})),
		}, []string{"ws chat → ", "http shop/x → shop \"x\"", "op shop/any GET /{*rest}: " + refused}, []string{"shop"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, _ := load(t, testSnapshot())
			cfg, err := b.Apply(change(testRevision+1, tc.items...))
			if err != nil {
				t.Fatalf("Apply = %v; want the change applied", err)
			}
			if b.Revision() != testRevision+1 || b.Current() != cfg {
				t.Fatalf("Revision = %d after Apply", b.Revision())
			}
			got := view(t, cfg)
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("view lacks %q:\n%s", w, strings.Join(got, "\n"))
				}
			}
			var failed []string
			for _, f := range cfg.Failures() {
				if !slices.Contains(failed, f.API) {
					failed = append(failed, f.API)
				}
			}
			if diff := cmp.Diff(tc.failed, failed); diff != "" {
				t.Errorf("failed APIs (-want +got):\n%s", diff)
			}
			// A later data change applies incrementally on top, failures and all.
			next, err := b.Apply(change(testRevision+2, put(subEnt("later", "/apis", "active", "key-new-2"))))
			if err != nil || next.Subscription(hash("key-new-2")) == nil || len(next.Failures()) != len(cfg.Failures()) {
				t.Errorf("Apply after the failure = %v; key-new-2 resolves: %v", err, next != nil && next.Subscription(hash("key-new-2")) != nil)
			}
		})
	}
}

// TestApplyUndecodable checks that a change with an entity that cannot be decoded at all is
// refused whole and leaves the Builder as it was.
func TestApplyUndecodable(t *testing.T) {
	t.Parallel()
	b, before := load(t, testSnapshot())
	beforeView := view(t, before)
	cfg, err := b.Apply(change(testRevision+1,
		put(subEnt("new", "/apis", "active", "key-new")),
		put(configwire.Entity{Kind: configwire.KindSubscription, Name: "bad", Properties: []byte(`[`)})))
	if err == nil || errors.Is(err, ErrResync) {
		t.Fatalf("Apply = %v, %v; want a decode error", cfg, err)
	}
	assertUnchanged(t, b, before, beforeView)
}

func TestApplyRedelivery(t *testing.T) {
	t.Parallel()
	b, _ := load(t, testSnapshot())
	cfg, err := b.Apply(change(testRevision+1, put(subEnt("new", "/apis", "active", "key-new"))))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for _, rev := range []int64{testRevision + 1, testRevision, 1} {
		// An old revision re-delivered, even with different content, changes nothing.
		got, err := b.Apply(change(rev, del(configwire.KindSubscription, "", "new"), put(policyEnt("", "X-Global", "zzz"))))
		if err != nil || got != cfg {
			t.Errorf("Apply(revision %d) = %p, %v; want the current Config %p", rev, got, err, cfg)
		}
	}
	if b.Revision() != testRevision+1 || b.Current().Subscription(hash("key-new")) == nil {
		t.Errorf("a re-delivery changed the Builder: revision %d", b.Revision())
	}
	if _, err := NewBuilder(b.env).Apply(change(1)); !errors.Is(err, ErrResync) {
		t.Errorf("Apply on an empty Builder = %v, want ErrResync", err)
	}
}

// TestImmutability applies a series of changes and checks that every Config handed out on the
// way still answers exactly as when it was handed out.
func TestImmutability(t *testing.T) {
	t.Parallel()
	b, cfg := load(t, testSnapshot())
	type handed struct {
		cfg  *Config
		view []string
	}
	out := []handed{{cfg, view(t, cfg)}}
	changes := [][]configwire.Item{
		{put(subEnt("new", "/apis", "active", "key-new"))},
		{put(subEnt("all", "/apis", "active", "key-new-2"))},
		{del(configwire.KindSubscription, "", "Starter-Sub")},
		{put(apiEnt("shop", "new/path", "http", nil))},
		{put(policyEnt("products/starter", "X-Product", "v2"))},
		{del(configwire.KindGatewayAPI, "gateways/gw1", "chat")},
		{put(policyEnt("", "X-Global", "g2"))},
		{put(namedValue("greeting-nv", "Greeting", "hi")), put(productEnt("free", true))},
		{del(configwire.KindProductAPI, "products/free", "public")},
	}
	for i, items := range changes {
		c, err := b.Apply(change(testRevision+1+int64(i), items...))
		if err != nil {
			t.Fatalf("Apply %d: %v", i, err)
		}
		out = append(out, handed{c, view(t, c)})
	}
	for i, h := range out {
		if diff := cmp.Diff(h.view, view(t, h.cfg)); diff != "" {
			t.Errorf("Config of revision %d changed after later changes (-handed out +now):\n%s", testRevision+i, diff)
		}
	}
	if diff := cmp.Diff(out[0].view, out[len(out)-1].view); diff == "" {
		t.Errorf("the changes changed nothing")
	}
}
