package compiled

import (
	"bytes"
	"crypto/sha256"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/pipeline"
)

// nearHash is a key hash whose first eight bytes, the key index's hash, are those of every
// other nearHash: the index must tell them apart by the rest.
func nearHash(last byte) [sha256.Size]byte {
	h := hash("near")
	h[sha256.Size-1] = last
	return h
}

// TestKeyIndexCollisions loads subscriptions whose key hashes collide in the key index, then
// changes them: each key still finds its own subscription, and only its own.
func TestKeyIndexCollisions(t *testing.T) {
	t.Parallel()
	b := NewBuilder(pipeline.Env{})
	l := b.StartLoad()
	for _, s := range []configwire.Subscription{
		{Name: "one", Scope: "apis", State: "active", KeyHashes: [][sha256.Size]byte{nearHash(1), nearHash(2)}},
		{Name: "two", Scope: "apis", State: "active", KeyHashes: [][sha256.Size]byte{nearHash(3), hash("far")}},
	} {
		if err := l.AddSubscription(s); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := l.Finish(configwire.Snapshot{ServiceID: testServiceID, Revision: testRevision})
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(c *Config) map[string]string {
		out := map[string]string{}
		for _, k := range []byte{1, 2, 3, 4} {
			if s := c.Subscription(nearHash(k)); s != nil {
				out[string('0'+k)] = s.Name
			}
		}
		if s := c.Subscription(hash("far")); s != nil {
			out["far"] = s.Name
		}
		return out
	}
	if diff := cmp.Diff(map[string]string{"1": "one", "2": "one", "3": "two", "far": "two"}, lookup(cfg)); diff != "" {
		t.Errorf("after the load, keys (-want +got):\n%s", diff)
	}
	if cfg.Keys() != 4 {
		t.Errorf("Keys = %d, want 4", cfg.Keys())
	}

	// Replacing one's keys and deleting two leaves the other entries of the hash alone.
	sub := configwire.Subscription{Name: "ONE", Scope: "apis", State: "active", KeyHashes: [][sha256.Size]byte{nearHash(2), nearHash(4)}}
	cfg, err = b.Apply(change(testRevision+1, put(sub.Entity()), del(configwire.KindSubscription, "", "two")))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"2": "ONE", "4": "ONE"}, lookup(cfg)); diff != "" {
		t.Errorf("after the change, keys (-want +got):\n%s", diff)
	}
	if cfg.Keys() != 2 {
		t.Errorf("Keys = %d, want 2", cfg.Keys())
	}
	var buf bytes.Buffer
	if err := b.Capture().Write(&buf); err != nil {
		t.Fatal(err)
	}
	if got := readBack(t, buf.Bytes()).Entities; len(got) != 1 || got[0].Name != "ONE" {
		t.Errorf("captured %+v, want ONE once", got)
	}
}

// TestNameIndexCollisions puts subscriptions under one hash in a name index: each is found by
// its name, in any case, and replaced or removed alone.
func TestNameIndexCollisions(t *testing.T) {
	t.Parallel()
	named := func(name string) func(*Subscription) bool {
		return func(s *Subscription) bool { return strings.EqualFold(s.Name, name) }
	}
	const h = 42 << 48
	subs := map[string]*Subscription{}
	e := (*subIndex)(nil).edit()
	for _, n := range []string{"a", "b", "c"} {
		subs[n] = &Subscription{Name: n}
		if old := e.put(h, subs[n], named(n)); old != nil {
			t.Errorf("put %s replaced %s", n, old.Name)
		}
	}
	x := e.done()
	names := func(x *subIndex) []string {
		var out []string
		for _, n := range []string{"a", "b", "c"} {
			if s := x.get(h, named(strings.ToUpper(n))); s != nil {
				out = append(out, s.Name)
			}
		}
		return out
	}
	if diff := cmp.Diff([]string{"a", "b", "c"}, names(x)); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}

	e = x.edit()
	if old := e.put(h, &Subscription{Name: "B"}, named("B")); old != subs["b"] {
		t.Errorf("replacing b replaced %v", old)
	}
	e.remove(h, subs["a"])
	y := e.done()
	if diff := cmp.Diff([]string{"B", "c"}, names(y)); diff != "" {
		t.Errorf("after replacing b and removing a (-want +got):\n%s", diff)
	}
	if y.len() != 2 || x.len() != 3 || !slices.Equal(names(x), []string{"a", "b", "c"}) {
		t.Errorf("lengths %d and %d, the first index now %v: an edit changed what it copied", x.len(), y.len(), names(x))
	}
}

// TestLoadingDuplicates checks what a load makes of subscriptions that share a name or a key:
// of one name the last counts, and of one key the last holder has it.
func TestLoadingDuplicates(t *testing.T) {
	t.Parallel()
	sub := func(name string, keys ...string) configwire.Subscription {
		s := configwire.Subscription{Name: name, Scope: "apis", State: "active"}
		for _, k := range keys {
			s.KeyHashes = append(s.KeyHashes, hash(k))
		}
		return s
	}
	tests := []struct {
		name string
		subs []configwire.Subscription
		want map[string]string // key → subscription
	}{
		{"one name twice, in another case", []configwire.Subscription{sub("s", "k1"), sub("S", "k2")}, map[string]string{"k2": "S"}},
		{"one key twice", []configwire.Subscription{sub("a", "k1", "k2"), sub("b", "k3", "k1")}, map[string]string{"k1": "b", "k2": "a", "k3": "b"}},
		{"a key's holder replaced", []configwire.Subscription{sub("a", "k1"), sub("b", "k1"), sub("A", "k3")}, map[string]string{"k1": "b", "k3": "A"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := NewBuilder(pipeline.Env{}).StartLoad()
			for _, s := range tc.subs {
				if err := l.AddSubscription(s); err != nil {
					t.Fatal(err)
				}
			}
			cfg, err := l.Finish(configwire.Snapshot{ServiceID: testServiceID, Revision: testRevision})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, k := range []string{"k1", "k2", "k3"} {
				if s := cfg.Subscription(hash(k)); s != nil {
					got[k] = s.Name
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
			if cfg.Keys() != len(tc.want) {
				t.Errorf("Keys = %d, want %d", cfg.Keys(), len(tc.want))
			}
		})
	}
}
