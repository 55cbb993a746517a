package catalog_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/mgmttest"
)

// newCatalog starts management with a clock the test moves and a service "svc" holding the
// active user alice, and returns its catalog.
func newCatalog(t *testing.T) (*catalog.Catalog, *atomic.Pointer[time.Time], catalog.ServiceRef, *mgmttest.Env) {
	t.Helper()
	env := mgmttest.Start(t, mgmttest.Options{NoRelay: true})
	var clock atomic.Pointer[time.Time]
	now := time.Now().UTC()
	clock.Store(&now)
	catalog.SetClock(env.Catalog, func() time.Time { return *clock.Load() })
	ref := catalog.ServiceRef{Subscription: "sub1", ResourceGroup: "rg1", Name: "svc"}
	env.CreateService(t, ref.Subscription, ref.ResourceGroup, ref.Name)
	putUser(t, env.Catalog, ref, "alice", "active")
	return env.Catalog, &clock, ref, env
}

func putUser(t *testing.T, cat *catalog.Catalog, ref catalog.ServiceRef, name, state string) {
	t.Helper()
	props, _ := json.Marshal(map[string]string{"email": name + "@example.com", "firstName": name, "lastName": "Example", "state": state})
	if _, _, err := cat.Put(t.Context(), ref, catalog.KindUser, "", name, props, catalog.Options{}); err != nil {
		t.Fatal(err)
	}
}

func TestUserTokenLifetime(t *testing.T) {
	t.Parallel()
	cat, clock, ref, _ := newCatalog(t)
	ctx := t.Context()
	now := *clock.Load()
	tok, err := cat.GenerateUserToken(ctx, ref, "alice", "primary", now.Add(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	c, err := cat.VerifyUserToken(ctx, tok)
	if err != nil {
		t.Fatalf("a fresh token: %v", err)
	}
	if c.User.Name != "alice" || c.Service.Ref != ref {
		t.Errorf("the token names %s of %+v, want alice of %+v", c.User.Name, c.Service.Ref, ref)
	}
	// The expiry is kept to the minute, as APIM's token format has it.
	if want := now.Add(10 * time.Minute).Truncate(time.Minute); !c.Expiry.Equal(want) {
		t.Errorf("expiry %v, want %v", c.Expiry, want)
	}
	later := now.Add(9 * time.Minute)
	clock.Store(&later)
	if _, err := cat.VerifyUserToken(ctx, tok); err != nil {
		t.Errorf("a token a minute before its expiry: %v", err)
	}
	expired := now.Add(11 * time.Minute)
	clock.Store(&expired)
	if _, err := cat.VerifyUserToken(ctx, tok); !errors.Is(err, catalog.ErrInvalidUserToken) {
		t.Errorf("an expired token: %v, want ErrInvalidUserToken", err)
	}
}

func TestUserTokenRequests(t *testing.T) {
	t.Parallel()
	cat, clock, ref, _ := newCatalog(t)
	ctx := t.Context()
	now := *clock.Load()
	putUser(t, cat, ref, "carol", "blocked")
	for _, tc := range []struct {
		name, user, keyType string
		expiry              time.Time
		want                string // in the error; "" for success
	}{
		{"primary", "alice", "primary", now.Add(time.Hour), ""},
		{"secondary", "alice", "Secondary", now.Add(30 * 24 * time.Hour), ""},
		{"past", "alice", "primary", now.Add(-time.Minute), "expiry must be in the future"},
		{"no expiry", "alice", "primary", time.Time{}, "expiry is required"},
		{"beyond 30 days", "alice", "primary", now.Add(30*24*time.Hour + time.Minute), "30 days"},
		{"bad key type", "alice", "tertiary", now.Add(time.Hour), "keyType must be primary or secondary"},
		{"blocked user", "carol", "primary", now.Add(time.Hour), "User 'carol' is blocked"},
		{"missing user", "nobody", "primary", now.Add(time.Hour), "User not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := cat.GenerateUserToken(ctx, ref, tc.user, tc.keyType, tc.expiry)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("GenerateUserToken: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("GenerateUserToken: %v, want an error containing %q", err, tc.want)
			case tc.want == "":
				if _, err := cat.VerifyUserToken(ctx, tok); err != nil {
					t.Errorf("VerifyUserToken: %v", err)
				}
			}
		})
	}
}

func TestUserTokenForgeries(t *testing.T) {
	t.Parallel()
	cat, clock, ref, env := newCatalog(t)
	ctx := t.Context()
	now := *clock.Load()
	putUser(t, cat, ref, "bob", "active")
	alice, err := cat.GenerateUserToken(ctx, ref, "alice", "primary", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	bob, err := cat.GenerateUserToken(ctx, ref, "bob", "primary", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	a, b := strings.Split(alice, "&"), strings.Split(bob, "&")
	// A second service signs with keys of its own.
	other := catalog.ServiceRef{Subscription: "sub2", ResourceGroup: "rg1", Name: "other"}
	env.CreateService(t, other.Subscription, other.ResourceGroup, other.Name)
	putUser(t, cat, other, "alice", "active")
	otherAlice, err := cat.GenerateUserToken(ctx, other, "alice", "primary", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	o := strings.Split(otherAlice, "&")
	for _, tc := range []struct{ name, token string }{
		{"bob's id with alice's signature", b[0] + "&" + a[1] + "&" + a[2]},
		{"a later expiry", a[0] + "&" + now.Add(2*time.Hour).Format("200601021504") + "&" + a[2]},
		{"a changed signature", a[0] + "&" + a[1] + "&" + flip(a[2])},
		{"signed by another service", a[0] + "&" + o[1] + "&" + o[2]},
		{"no signature", a[0] + "&" + a[1] + "&"},
		{"two parts", a[0] + "&" + a[1]},
		{"an unknown id", "6f1d6d1c-0a53-4f43-9d1e-2f3c4b5a6978&" + a[1] + "&" + a[2]},
		{"not a uuid", "alice&" + a[1] + "&" + a[2]},
		{"a bad expiry", a[0] + "&tomorrow&" + a[2]},
		{"empty", ""},
	} {
		if _, err := cat.VerifyUserToken(ctx, tc.token); !errors.Is(err, catalog.ErrInvalidUserToken) {
			t.Errorf("%s: VerifyUserToken = %v, want ErrInvalidUserToken", tc.name, err)
		}
	}
	// The signing keys are sealed at rest: the row holds neither key nor a token's signature.
	var sealed []byte
	if err := env.Pool.QueryRow(ctx, `SELECT sealed FROM services WHERE name = 'svc'`).Scan(&sealed); err != nil || len(sealed) == 0 {
		t.Fatalf("sealed service secrets: %v (%d bytes)", err, len(sealed))
	}
	if strings.Contains(string(sealed), "userToken") {
		t.Error("the service's secrets are stored in the clear")
	}
}

func TestUserTokenEndsWithTheUser(t *testing.T) {
	t.Parallel()
	cat, clock, ref, _ := newCatalog(t)
	ctx := t.Context()
	tok, err := cat.GenerateUserToken(ctx, ref, "alice", "secondary", clock.Load().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	verify := func(want bool, when string) {
		t.Helper()
		_, err := cat.VerifyUserToken(ctx, tok)
		if want && err != nil || !want && !errors.Is(err, catalog.ErrInvalidUserToken) {
			t.Errorf("%s: VerifyUserToken = %v, want valid=%v", when, err, want)
		}
	}
	verify(true, "active")
	putUser(t, cat, ref, "alice", "blocked")
	verify(false, "blocked")
	putUser(t, cat, ref, "alice", "active")
	verify(true, "active again")
	putUser(t, cat, ref, "alice", "deleted")
	verify(false, "state deleted")
	if err := cat.Delete(ctx, ref, catalog.KindUser, "", "alice", catalog.Options{}); err != nil {
		t.Fatal(err)
	}
	verify(false, "deleted")
	putUser(t, cat, ref, "alice", "active")
	verify(false, "a new user of the same name")
}

func TestServiceSecretsConcurrentFirstUse(t *testing.T) {
	t.Parallel()
	cat, clock, ref, _ := newCatalog(t)
	ctx := context.WithoutCancel(t.Context())
	// Replicas issuing the first tokens of a service at once must agree on its keys.
	tokens := make([]string, 8)
	errs := make([]error, len(tokens))
	var wg sync.WaitGroup
	for i := range tokens {
		wg.Go(func() {
			tokens[i], errs[i] = cat.GenerateUserToken(ctx, ref, "alice", "primary", clock.Load().Add(time.Hour))
		})
	}
	wg.Wait()
	for i, tok := range tokens {
		if errs[i] != nil {
			t.Fatalf("token %d: %v", i, errs[i])
		}
		if _, err := cat.VerifyUserToken(ctx, tok); err != nil {
			t.Errorf("token %d does not verify: %v", i, err)
		}
	}
}

// flip changes the first character of a Base64 signature.
func flip(sig string) string {
	if sig[0] == 'A' {
		return "B" + sig[1:]
	}
	return "A" + sig[1:]
}
