package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/mgmttest"
	"gatehouse.dev/pkg/configwire"
)

// checkStreamMatches fetches the snapshot of token as a stream, for each way a gateway may ask
// for one, and checks it against the JSON snapshot want: the same header and entities, with
// subscriptions in their compact form. A client that does not ask gets JSON.
func checkStreamMatches(t *testing.T, env *mgmttest.Env, token string, want configwire.Snapshot) {
	t.Helper()
	var wantEnts []configwire.Entity
	var wantSubs []configwire.Subscription
	for _, e := range want.Entities {
		if e.Kind != configwire.KindSubscription {
			wantEnts = append(wantEnts, e)
			continue
		}
		s, err := configwire.SubscriptionOf(e)
		if err != nil {
			t.Fatal(err)
		}
		wantSubs = append(wantSubs, s)
	}
	byName := func(a, b configwire.Subscription) int { return strings.Compare(a.Name, b.Name) }
	slices.SortFunc(wantSubs, byName)
	want.Entities = nil

	for _, tc := range []struct {
		accept string
		stream bool
	}{
		{configwire.SnapshotStreamType, true},
		{configwire.SnapshotStreamType + ", application/json;q=0.5", true},
		{"application/json;q=0.5, " + configwire.SnapshotStreamType + ";q=0.9", true},
		{configwire.SnapshotStreamType + ";q=0", false},
		{"application/json", false},
		{"", false},
	} {
		r := env.Do(t, http.MethodGet, "/gatehouse/gateway/v1/config", nil, "Authorization", "GatewayKey "+token, "Accept", tc.accept)
		if r.Status != http.StatusOK {
			t.Fatalf("Accept %q: status %d; body %s", tc.accept, r.Status, r.Body)
		}
		wantType := "application/json"
		if tc.stream {
			wantType = configwire.SnapshotStreamType
		}
		if got := r.Header.Get("Content-Type"); got != wantType {
			t.Errorf("Accept %q: Content-Type %q, want %q", tc.accept, got, wantType)
		}
		var ents []configwire.Entity
		var subs []configwire.Subscription
		head, err := configwire.ReadSnapshot(bytes.NewReader(r.Body), configwire.SnapshotHandler{
			Entity: func(e configwire.Entity) error {
				ents = append(ents, e)
				return nil
			},
			Subscription: func(s configwire.Subscription) error {
				s.KeyHashes = slices.Clone(s.KeyHashes)
				subs = append(subs, s)
				return nil
			},
		})
		if err != nil {
			t.Fatalf("Accept %q: %v", tc.accept, err)
		}
		slices.SortFunc(subs, byName)
		// A stream is sealed by management's active key, over what it holds; the node key of
		// the caller's gateway comes with every answer.
		v, err := configwire.NewVerifier(env.Keys.VerifyKeys())
		if err != nil {
			t.Fatal(err)
		}
		if err := v.VerifySnapshot(head); tc.stream != (err == nil) {
			t.Errorf("Accept %q: seal: %v", tc.accept, err)
		}
		if got, want := r.Header.Get(configwire.NodeKeyHeader), env.NodeKey(t, want.ServiceID, want.Gateway).String(); got != want {
			t.Errorf("Accept %q: node key %q, want the gateway's", tc.accept, got)
		}
		head.Seal = nil
		if diff := cmp.Diff(want, head); diff != "" {
			t.Errorf("Accept %q: header (-JSON +stream):\n%s", tc.accept, diff)
		}
		if diff := cmp.Diff(wantEnts, ents, cmp.Comparer(func(a, b json.RawMessage) bool { return bytes.Equal(a, b) })); diff != "" {
			t.Errorf("Accept %q: entities (-JSON +stream):\n%s", tc.accept, diff)
		}
		if diff := cmp.Diff(wantSubs, subs); diff != "" {
			t.Errorf("Accept %q: subscriptions (-JSON +stream):\n%s", tc.accept, diff)
		}
	}
}
