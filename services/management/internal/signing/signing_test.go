package signing_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"gatehouse.dev/management/internal/dbtest"
	"gatehouse.dev/management/internal/secretbox"
	"gatehouse.dev/management/internal/signing"
	"gatehouse.dev/management/internal/store/migrate"
	"gatehouse.dev/pkg/configwire"
)

func TestKeyring(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	url, drop, err := dbtest.Setup(ctx, "gh_signing", migrate.Migrate)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	box, err := secretbox.New("test key")
	if err != nil {
		t.Fatal(err)
	}

	// Two replicas opening at once share one key.
	first, err := signing.Open(ctx, pool, box, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := signing.Open(ctx, pool, box, nil)
	if err != nil {
		t.Fatal(err)
	}
	old := first.Signer()
	if second.Signer().KeyID() != old.KeyID() || len(first.VerifyKeys()) != 1 {
		t.Fatalf("replicas sign with %s and %s; %d keys", old.KeyID(), second.Signer().KeyID(), len(first.VerifyKeys()))
	}
	sig := old.SignChange("svc", 1, []byte("{}"))
	binding := []byte("binding of a gateway key")
	nodeKey := first.NodeKey("svc", "GW", binding)

	// A rotation: the new key signs, the old one still verifies, and node keys derived from it
	// still check.
	id, err := first.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if first.Signer().KeyID() != id || id == old.KeyID() {
		t.Fatalf("after the rotation the signer is %s, want %s", first.Signer().KeyID(), id)
	}
	v, err := configwire.NewVerifier(first.VerifyKeys())
	if err != nil {
		t.Fatal(err)
	}
	if err := v.VerifyChange("svc", 1, []byte("{}"), sig); err != nil {
		t.Errorf("a change signed before the rotation: %v", err)
	}
	// The retired key is listed with the end of its window, the active one without.
	for _, k := range first.VerifyKeys() {
		switch until := time.Until(k.Until); {
		case k.ID == id && !k.Until.IsZero():
			t.Errorf("the active key is listed until %v", k.Until)
		case k.ID == old.KeyID() && (until < signing.RetiredVerifyFor-time.Hour || until > signing.RetiredVerifyFor):
			t.Errorf("the retired key is listed until %v, want RetiredVerifyFor from now", k.Until)
		}
	}
	if err := v.VerifyChange("svc", 1, []byte("{}"), first.Signer().SignChange("svc", 1, []byte("{}"))); err != nil {
		t.Errorf("a change signed after the rotation: %v", err)
	}
	again, ok := first.NodeKeyFor(nodeKey.ID, "svc", "gw", binding)
	if !ok || again.String() != nodeKey.String() {
		t.Errorf("the node key derived from the retired key (gateway names compare case-insensitively) differs")
	}
	if _, ok := first.NodeKeyFor("kunknown", "svc", "gw", binding); ok {
		t.Error("a node key for an unknown key id")
	}
	if first.NodeKey("svc", "gw", binding).String() == first.NodeKey("svc", "other", binding).String() {
		t.Error("two gateways share a node key")
	}
	if first.NodeKey("svc", "gw", binding).String() == first.NodeKey("svc", "gw", []byte("a regenerated key")).String() {
		t.Error("a regenerated gateway key keeps the node key")
	}

	// Once retired for longer than RetiredVerifyFor the old key is no longer listed to nodes,
	// so a change it signed no longer verifies.
	if _, err := pool.Exec(ctx, "UPDATE signing_keys SET retired_at = now() - make_interval(secs => $1) - interval '1 minute' WHERE id = $2",
		signing.RetiredVerifyFor.Seconds(), old.KeyID()); err != nil {
		t.Fatal(err)
	}
	later, err := signing.Open(ctx, pool, box, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err = configwire.NewVerifier(later.VerifyKeys())
	if err != nil {
		t.Fatal(err)
	}
	if err := v.VerifyChange("svc", 1, []byte("{}"), sig); err == nil || len(later.VerifyKeys()) != 1 {
		t.Errorf("a change signed by a key retired past the window verifies (%d keys listed)", len(later.VerifyKeys()))
	}

	// The seed is sealed: another MANAGEMENT_ENCRYPTION_KEY cannot open it.
	wrong, err := secretbox.New("another key")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signing.Open(ctx, pool, wrong, nil); err == nil {
		t.Error("the keys opened with another encryption key")
	}
}
