package configwire_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"gatehouse.dev/pkg/configwire"
)

func TestSnapshotSeal(t *testing.T) {
	t.Parallel()
	key := configwire.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize)))
	other := configwire.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize)))
	v, err := configwire.NewVerifier([]configwire.VerifyKey{key.VerifyKey()})
	if err != nil {
		t.Fatal(err)
	}
	write := func(signer *configwire.Signer) []byte {
		var buf bytes.Buffer
		sw, err := configwire.NewSnapshotWriter(&buf, configwire.SnapshotStream, configwire.Snapshot{ServiceID: "svc", Revision: 7,
			SigningKeys: []configwire.VerifyKey{key.VerifyKey()}})
		if err != nil {
			t.Fatal(err)
		}
		if err := sw.WriteEntity(configwire.Entity{Kind: configwire.KindAPI, Name: "echo"}); err != nil {
			t.Fatal(err)
		}
		if err := sw.WriteSubscription(configwire.Subscription{Name: "s", KeyHashes: [][32]byte{{1}}}); err != nil {
			t.Fatal(err)
		}
		if signer != nil {
			sw.Sign(signer)
		}
		if err := sw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	sealed := write(key)
	snap, err := configwire.DecodeSnapshot(bytes.NewReader(sealed))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.VerifySnapshot(snap); err != nil {
		t.Errorf("sealed snapshot: %v", err)
	}

	unsealed, err := configwire.DecodeSnapshot(bytes.NewReader(write(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.VerifySnapshot(unsealed); !errors.Is(err, configwire.ErrUnsigned) {
		t.Errorf("unsealed snapshot: %v, want ErrUnsigned", err)
	}
	foreign, err := configwire.DecodeSnapshot(bytes.NewReader(write(other)))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.VerifySnapshot(foreign); !errors.Is(err, configwire.ErrForged) {
		t.Errorf("snapshot sealed by another key: %v, want ErrForged", err)
	}
	// One byte changed in the entity: the seal no longer verifies.
	i := bytes.Index(sealed, []byte("echo"))
	tampered := bytes.Clone(sealed)
	tampered[i] = 'x'
	if snap, err := configwire.DecodeSnapshot(bytes.NewReader(tampered)); err != nil {
		t.Fatal(err)
	} else if err := v.VerifySnapshot(snap); !errors.Is(err, configwire.ErrForged) {
		t.Errorf("tampered snapshot: %v, want ErrForged", err)
	}
	// The revision is bound too.
	snap.Revision = 8
	if err := v.VerifySnapshot(snap); !errors.Is(err, configwire.ErrForged) {
		t.Errorf("snapshot with another revision: %v, want ErrForged", err)
	}
}

func TestChangeSignature(t *testing.T) {
	t.Parallel()
	key := configwire.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize)))
	v, err := configwire.NewVerifier([]configwire.VerifyKey{key.VerifyKey()})
	if err != nil {
		t.Fatal(err)
	}
	sig := key.SignChange("svc", 3, []byte(`{"a":1}`))
	if sig != key.SignChange("svc", 3, []byte(`{"a":1}`)) {
		t.Error("signatures are not deterministic: a re-published change would get another message id")
	}
	for _, tc := range []struct {
		name    string
		svc     string
		rev     int64
		payload string
		sig     string
		want    error
	}{
		{"valid", "svc", 3, `{"a":1}`, sig, nil},
		{"unsigned", "svc", 3, `{"a":1}`, "", configwire.ErrUnsigned},
		{"other payload", "svc", 3, `{"a":2}`, sig, configwire.ErrForged},
		{"other revision", "svc", 4, `{"a":1}`, sig, configwire.ErrForged},
		{"other service", "svd", 3, `{"a":1}`, sig, configwire.ErrForged},
		{"no key id", "svc", 3, `{"a":1}`, "abc", configwire.ErrForged},
		{"nil verifier", "svc", 3, `{"a":1}`, sig, configwire.ErrForged},
	} {
		vv := v
		if tc.name == "nil verifier" {
			vv = nil
		}
		if err := vv.VerifyChange(tc.svc, tc.rev, []byte(tc.payload), tc.sig); !errors.Is(err, tc.want) && (err != nil || tc.want != nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestRetiredKeyExpires: a key listed with an Until verifies changes, requests and snapshot
// seals until then and not after, so that a node stops trusting a key retired past its window
// without fetching a snapshot; a key without Until never expires.
func TestRetiredKeyExpires(t *testing.T) {
	t.Parallel()
	active := configwire.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize)))
	retired := configwire.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize)))
	expired := configwire.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize)))
	listed := func(s *configwire.Signer, until time.Time) configwire.VerifyKey {
		k := s.VerifyKey()
		k.Until = until
		return k
	}
	v, err := configwire.NewVerifier([]configwire.VerifyKey{active.VerifyKey(), listed(retired, time.Now().Add(time.Hour)),
		listed(expired, time.Now().Add(-time.Second))})
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"a":1}`)
	for _, tc := range []struct {
		name string
		key  *configwire.Signer
		want error
	}{
		{"the active key", active, nil},
		{"a key within its window", retired, nil},
		{"a key past its window", expired, configwire.ErrForged},
	} {
		if err := v.VerifyChange("svc", 3, payload, tc.key.SignChange("svc", 3, payload)); !errors.Is(err, tc.want) && (err != nil || tc.want != nil) {
			t.Errorf("%s: change: %v, want %v", tc.name, err, tc.want)
		}
		if err := v.VerifyRequest("subj", "inbox", payload, tc.key.SignRequest("subj", "inbox", payload)); !errors.Is(err, tc.want) && (err != nil || tc.want != nil) {
			t.Errorf("%s: request: %v, want %v", tc.name, err, tc.want)
		}
	}
}
