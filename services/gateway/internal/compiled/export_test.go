package compiled

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/pipeline"
)

// entityKeys lists a snapshot's entities as kind|parent|name, sorted.
func entityKeys(snap configwire.Snapshot) []string {
	var out []string
	for _, e := range snap.Entities {
		out = append(out, key(e.Kind, e.Parent, e.Name))
	}
	slices.Sort(out)
	return out
}

func TestCaptureWrite(t *testing.T) {
	t.Parallel()
	b, _ := load(t, testSnapshot())
	if _, err := b.Apply(change(testRevision+1, put(subEnt("new", "/apis/chat", "active", "key-new", "key-new-2")),
		del(configwire.KindSubscription, "", "all"))); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	c := b.Capture()
	// The capture is of its revision: later changes do not reach it.
	if _, err := b.Apply(change(testRevision+2, put(subEnt("later", "/apis", "active", "key-later")))); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if c.Revision() != testRevision+1 {
		t.Errorf("Revision = %d, want %d", c.Revision(), testRevision+1)
	}
	var buf bytes.Buffer
	if err := c.Write(&buf); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got := readBack(t, buf.Bytes())
	if got.Revision != testRevision+1 || got.ServiceID != testServiceID || got.Service != "svc" || got.Gateway != "gw1" {
		t.Errorf("identity = %d %q %q %q", got.Revision, got.ServiceID, got.Service, got.Gateway)
	}
	if slices.Contains(entityKeys(got), key(configwire.KindSubscription, "", "later")) {
		t.Error("the capture holds a subscription added after it was taken")
	}

	// Loading what was written serves as the Builder did at the captured revision.
	want, _ := load(t, testSnapshot())
	if _, err := want.Apply(change(testRevision+1, put(subEnt("new", "/apis/chat", "active", "key-new", "key-new-2")),
		del(configwire.KindSubscription, "", "all"))); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if diff := cmp.Diff(entityKeys(want.Export()), entityKeys(got)); diff != "" {
		t.Errorf("written entities (-Export +Write):\n%s", diff)
	}
	var wantSubs, gotSubs []string
	for _, e := range testSnapshot().Entities {
		if e.Kind == configwire.KindSubscription && e.Name != "all" {
			wantSubs = append(wantSubs, e.Name)
		}
	}
	wantSubs = append(wantSubs, "new")
	for _, e := range got.Entities {
		if e.Kind == configwire.KindSubscription {
			gotSubs = append(gotSubs, e.Name)
		}
	}
	slices.Sort(wantSubs)
	slices.Sort(gotSubs)
	if diff := cmp.Diff(wantSubs, gotSubs); diff != "" {
		t.Errorf("written subscriptions, each once (-want +got):\n%s", diff)
	}
	_, loaded := load(t, got)
	if diff := cmp.Diff(view(t, want.Current()), view(t, loaded)); diff != "" {
		t.Errorf("Load of what Write wrote serves differently (-captured +loaded):\n%s", diff)
	}
}

func TestCaptureWriteEmpty(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := NewBuilder(pipeline.Env{}).Capture().Write(&buf); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if got := readBack(t, buf.Bytes()); len(got.Entities) != 0 {
		t.Errorf("Write of an empty Builder = %+v, want a snapshot without entities", got)
	}
}

// readBack reads a snapshot that Write wrote, its subscriptions as entities.
func readBack(t *testing.T, raw []byte) configwire.Snapshot {
	t.Helper()
	snap, err := configwire.DecodeSnapshot(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("Write wrote no snapshot: %v", err)
	}
	return snap
}

func TestLoading(t *testing.T) {
	t.Parallel()
	snap := testSnapshot()
	b, before := load(t, snap)
	beforeView := view(t, before)

	// A Loading that is dropped, or fails, leaves the Builder as it was.
	l := b.StartLoad()
	for _, e := range snap.Entities[:len(snap.Entities)/2] {
		if err := l.Add(e); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	if err := b.StartLoad().Add(ent(configwire.KindPolicy, "apis/chat", "policy", obj{"value": "<policies>", "format": "xml"})); err != nil {
		t.Errorf("Add of a policy that does not parse = %v; want it kept, to fail closed", err)
	}
	if err := b.StartLoad().Add(configwire.Entity{Kind: configwire.KindSubscription, Name: "x", Properties: []byte(`"x"`)}); err == nil {
		t.Error("Add of a subscription that does not decode succeeded")
	}
	assertUnchanged(t, b, before, beforeView)

	// Entities added one at a time compile as a whole snapshot does.
	b2 := NewBuilder(pipeline.Env{})
	l = b2.StartLoad()
	for _, e := range snap.Entities {
		if err := l.Add(e); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	cfg, err := l.Finish(configwire.Snapshot{ServiceID: snap.ServiceID, Service: snap.Service, Gateway: snap.Gateway, Revision: snap.Revision})
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if b2.Current() != cfg || b2.Revision() != snap.Revision {
		t.Errorf("Finish did not make its Config current: revision %d", b2.Revision())
	}
	if diff := cmp.Diff(beforeView, view(t, cfg)); diff != "" {
		t.Errorf("Loading differs from Load (-Load +Loading):\n%s", diff)
	}
}

// TestScopesShared checks that subscriptions with one scope share its string, however many
// there are: a million subscriptions would otherwise hold a million copies.
func TestScopesShared(t *testing.T) {
	t.Parallel()
	snap := testSnapshot()
	for i := range 3 {
		snap.Entities = append(snap.Entities, subEnt(fmt.Sprintf("extra-%d", i), "/apis/chat", "active", fmt.Sprintf("key-extra-%d", i)))
	}
	_, cfg := load(t, snap)
	a, b := cfg.Subscription(hash("key-extra-0")), cfg.Subscription(hash("key-extra-2"))
	if a == nil || b == nil {
		t.Fatal("subscriptions not loaded")
	}
	if a.Scope() != "apis/chat" || unsafe.StringData(a.Scope()) != unsafe.StringData(b.Scope()) {
		t.Errorf("scopes %q and %q are not one shared string", a.Scope(), b.Scope())
	}
}
