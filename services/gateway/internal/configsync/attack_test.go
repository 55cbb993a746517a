package configsync_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/gateway/internal/configsync"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

// attacker publishes on the bus as anyone who reaches it could: it knows the subjects, the
// headers and the message-id scheme, and holds a key of its own, not management's.
type attacker struct {
	t   *testing.T
	js  jetstream.JetStream
	key *configwire.Signer
}

func newAttacker(t *testing.T, js jetstream.JetStream) attacker {
	return attacker{t: t, js: js, key: configwire.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0xA7}, ed25519.SeedSize)))}
}

// publish sends ch with sig as its signature header ("" for none) and msgID as its
// Nats-Msg-Id ("" for none), and reports whether JetStream stored it (false: a duplicate).
func (a attacker) publish(ch configwire.Change, sig, msgID string) bool {
	a.t.Helper()
	data, err := json.Marshal(ch)
	if err != nil {
		a.t.Fatal(err)
	}
	msg := nats.NewMsg(bus.ConfigSubject(ch.ServiceID))
	msg.Data = data
	msg.Header.Set(bus.HeaderRevision, strconv.FormatInt(ch.Revision, 10))
	msg.Header.Set(bus.HeaderService, ch.ServiceID)
	if sig != "" {
		msg.Header.Set(bus.HeaderSignature, sig)
	}
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	ack, err := a.js.PublishMsg(a.t.Context(), msg, opts...)
	if err != nil {
		a.t.Fatalf("attacker's publish: %v", err)
	}
	return !ack.Duplicate
}

// drops records what a Syncer dropped (configsync.Options.Dropped).
type drops struct {
	mu      sync.Mutex
	reasons []string
}

func (d *drops) add(reason string) {
	d.mu.Lock()
	d.reasons = append(d.reasons, reason)
	d.mu.Unlock()
}

func (d *drops) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.reasons)
}

// startCountingNode is startNode with the drops counted.
func startCountingNode(t *testing.T, m *management) (*node, *drops) {
	t.Helper()
	d := &drops{}
	n := startNodeWith(t, m, "", func(o *configsync.Options) { o.Dropped = d.add })
	return n, d
}

// startFollowing starts NATS with the config stream, a management double serving revision 5,
// and a node with its drops counted, and returns once the node serves revision 5 and follows
// the stream.
func startFollowing(t *testing.T) (natsURL string, js jetstream.JetStream, m *management, n *node, d *drops) {
	t.Helper()
	natsURL, js = startJetStream(t)
	m = newManagement(t)
	m.set(snapshot(natsURL, 5))
	n, d = startCountingNode(t, m)
	n.waitRevision(t, 5)
	waitConsumers(t, js, 0)
	return natsURL, js, m, n, d
}

// TestAttackForgedNextRevision: a change of the next revision adding a subscription whose key
// hash the attacker chose is dropped and counted whether it is unsigned, signed with another
// key, signed with another key under management's key id, or management's signature of
// different bytes; the node fetches a snapshot instead, and the key never gets in.
func TestAttackForgedNextRevision(t *testing.T) {
	t.Parallel()
	natsURL, js, m, n, d := startFollowing(t)
	a := newAttacker(t, js)

	evil := change(6, put(sub("evil", "active", "attacker-key")))
	data, _ := json.Marshal(evil)
	innocent := change(6, put(greeting("hi")))
	innocentData, _ := json.Marshal(innocent)
	foreign := a.key.SignChange(serviceID, 6, data)
	cases := []struct{ name, sig, want string }{
		{"unsigned", "", "unsigned"},
		{"signed with another key", foreign, "forged"},
		{"another key under management's key id", testKey.KeyID() + foreign[bytes.IndexByte([]byte(foreign), '.'):], "forged"},
		{"management's signature of other bytes", testKey.SignChange(serviceID, 6, innocentData), "forged"},
		{"management's signature for another revision", testKey.SignChange(serviceID, 7, data), "forged"},
		{"management's signature for another service", testKey.SignChange("other-svc", 6, data), "forged"},
		{"malformed", "garbage", "forged"},
	}
	for i, tc := range cases {
		fetches := m.fetches.Load()
		a.publish(evil, tc.sig, "")
		waitFor(t, tc.name+": dropped", func() bool { return len(d.list()) == i+1 })
		if got := d.list()[i]; got != tc.want {
			t.Errorf("%s: dropped as %q, want %q", tc.name, got, tc.want)
		}
		// The drop asks for a snapshot, which brings revision 6 if management has it.
		waitFor(t, tc.name+": a snapshot fetched", func() bool { return m.fetches.Load() > fetches })
		if got := keyState(n.cur.Load(), "attacker-key"); got != "none" {
			t.Fatalf("%s: the attacker's key = %s", tc.name, got)
		}
	}
	if got := n.cur.Load().Revision; got != 5 {
		t.Errorf("serving revision %d, want 5", got)
	}
	// Management's real revision 6 still applies.
	m.set(snapshot(natsURL, 6, sub("real", "active", "key-real")))
	publish(t, js, change(6, put(sub("real", "active", "key-real"))))
	if got := keyState(n.waitRevision(t, 6), "key-real"); got != "real active" {
		t.Errorf("key-real = %s", got)
	}
	if got := keyState(n.cur.Load(), "attacker-key"); got != "none" {
		t.Errorf("the attacker's key = %s", got)
	}
}

// TestAttackReplayedChange: management's own signed change of an earlier revision, published
// again, is dropped as a replay and does not undo what came after it.
func TestAttackReplayedChange(t *testing.T) {
	t.Parallel()
	natsURL, js, m, n, d := startFollowing(t)

	// Revision 6 lets key-a in, revision 7 suspends it; the attacker captured revision 6.
	active := change(6, put(sub("a", "active", "key-a")))
	publish(t, js, active)
	n.waitRevision(t, 6)
	m.set(snapshot(natsURL, 7, sub("a", "suspended", "key-a")))
	publish(t, js, change(7, put(sub("a", "suspended", "key-a"))))
	n.waitRevision(t, 7)

	data, _ := json.Marshal(active)
	newAttacker(t, js).publish(active, testKey.SignChange(serviceID, 6, data), "")
	waitFor(t, "the replay dropped", func() bool { return slices.Contains(d.list(), "replayed") })
	if got := keyState(n.cur.Load(), "key-a"); got != "a suspended" {
		t.Errorf("after the replay: key-a = %s, want a suspended", got)
	}
}

// TestAttackMessageIDRacesSuspension: an attacker who publishes first with the message id
// management's suspension would have had under the old scheme ("<service>:<revision>"), and
// with every id it can compute, does not make JetStream drop the real change: the suspension
// is enforced.
func TestAttackMessageIDRacesSuspension(t *testing.T) {
	t.Parallel()
	natsURL, js := startJetStream(t)
	m := newManagement(t)
	m.set(snapshot(natsURL, 6, sub("a", "active", "key-a")))
	n, _ := startCountingNode(t, m)
	if got := keyState(n.waitRevision(t, 6), "key-a"); got != "a active" {
		t.Fatalf("key-a = %s", got)
	}
	waitConsumers(t, js, 0)

	// The attacker races revision 7 with a harmless-looking change under every id it can
	// guess: the old one, and the new scheme with digests of signatures it can make.
	a := newAttacker(t, js)
	decoy := change(7, put(greeting("hello")))
	decoyData, _ := json.Marshal(decoy)
	for _, id := range []string{
		serviceID + ":7",
		bus.ConfigMsgID(serviceID, 7, configwire.SignatureDigest("")),
		bus.ConfigMsgID(serviceID, 7, configwire.SignatureDigest(a.key.SignChange(serviceID, 7, decoyData))),
	} {
		a.publish(decoy, "", id)
	}

	// Management commits and publishes the suspension as its relay does.
	m.set(snapshot(natsURL, 7, sub("a", "suspended", "key-a")))
	suspend := change(7, put(sub("a", "suspended", "key-a")))
	data, _ := json.Marshal(suspend)
	sig := testKey.SignChange(serviceID, 7, data)
	msg := nats.NewMsg(bus.ConfigSubject(serviceID))
	msg.Data = data
	msg.Header.Set(bus.HeaderRevision, "7")
	msg.Header.Set(bus.HeaderService, serviceID)
	msg.Header.Set(bus.HeaderSignature, sig)
	ack, err := js.PublishMsg(t.Context(), msg, jetstream.WithMsgID(bus.ConfigMsgID(serviceID, 7, configwire.SignatureDigest(sig))))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Duplicate {
		t.Fatal("JetStream dropped management's suspension as a duplicate")
	}
	if got := keyState(n.waitRevision(t, 7), "key-a"); got != "a suspended" {
		t.Errorf("key-a = %s, want a suspended", got)
	}
}

// TestSigningKeyRotation: after management rotates its signing key, a node that meets a change
// signed by the new key, which it does not know yet, drops it and fetches a snapshot listing
// the new key and the retired ones with the ends of their windows. A change signed by a key
// within its window (a replica that has not read the keys again) still applies; one signed by a
// key whose window has passed while the node ran is dropped as forged, and the node takes that
// revision from a snapshot instead.
func TestSigningKeyRotation(t *testing.T) {
	t.Parallel()
	natsURL, js, m, n, d := startFollowing(t)

	rotated := configwire.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x52}, ed25519.SeedSize)))
	lapsing := configwire.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x4C}, ed25519.SeedSize)))
	within := testKey.VerifyKey()
	within.Until = time.Now().Add(time.Hour)
	lapses := lapsing.VerifyKey()
	lapses.Until = time.Now().Add(100 * time.Millisecond)
	rotatedSnapshot := func(rev int64, extra ...configwire.Entity) configwire.Snapshot {
		s := snapshot(natsURL, rev, extra...)
		s.SigningKeys = []configwire.VerifyKey{rotated.VerifyKey(), within, lapses}
		return s
	}
	m.mu.Lock()
	m.sealWith = rotated
	m.mu.Unlock()

	// Revision 6, the first signed by the new key.
	m.set(rotatedSnapshot(6, sub("a", "active", "key-a")))
	fetches := m.fetches.Load()
	data, _ := json.Marshal(change(6, put(sub("a", "active", "key-a"))))
	publishSigned(t, js, rotated, 6, data)
	if got := keyState(n.waitRevision(t, 6), "key-a"); got != "a active" {
		t.Errorf("key-a = %s", got)
	}
	if got := d.list(); !slices.Equal(got, []string{"forged"}) || m.fetches.Load() == fetches {
		t.Errorf("the change signed by the new key: drops %v and %d snapshots fetched, want one forged drop and a snapshot", got, m.fetches.Load()-fetches)
	}

	// Revision 7 signed by the retired key, within its window: applied as a change.
	data, _ = json.Marshal(change(7, put(sub("a", "suspended", "key-a"))))
	publishSigned(t, js, testKey, 7, data)
	if got := keyState(n.waitRevision(t, 7), "key-a"); got != "a suspended" {
		t.Errorf("key-a = %s", got)
	}
	if !slices.Contains(n.appliedRevisions(), 7) {
		t.Errorf("revision 7 was not applied as a change: applied %v", n.appliedRevisions())
	}

	// Revision 8 signed by the key whose window passed: dropped, and taken from a snapshot.
	waitFor(t, "the lapsing key's window to pass", func() bool { return time.Now().After(lapses.Until) })
	m.set(rotatedSnapshot(8, sub("a", "active", "key-a")))
	fetches = m.fetches.Load()
	data, _ = json.Marshal(change(8, put(sub("a", "active", "key-a"))))
	publishSigned(t, js, lapsing, 8, data)
	n.waitRevision(t, 8)
	if got := d.list(); !slices.Equal(got, []string{"forged", "forged"}) || m.fetches.Load() == fetches {
		t.Errorf("the change signed by the lapsed key: drops %v and %d snapshots fetched, want a second forged drop and a snapshot", got, m.fetches.Load()-fetches)
	}
	if slices.Contains(n.appliedRevisions(), 8) {
		t.Error("revision 8, signed by a key past its window, was applied")
	}
}
