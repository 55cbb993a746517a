package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/outbox"
	"gatehouse.dev/pkg/configwire"
)

// TestPolicyIntegrity is issue 11's end-to-end check on two nodes: management refuses the
// policies a node cannot compile; a policy a node still cannot compile (an older node during a
// rolling upgrade, simulated by storing and publishing it past management's checks) fails its
// API closed on every node while every later change — a new API, a regenerated key, a
// suspended and a deleted subscription — is enforced on both nodes; a node started afterwards
// becomes ready; and the fleet view names the failure.
func TestPolicyIntegrity(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	be := newBackend(t, "main", "")
	for _, api := range []string{"good", "poisoned"} {
		s.wsAPI(t, api, api, be.wsURL("/"+api), nil)
	}
	keyA := s.subscription(t, "a", "/apis", "active")
	keyB := s.subscription(t, "b", "/apis", "active")
	keyC := s.subscription(t, "c", "/apis", "active")
	keyD := s.subscription(t, "d", "/apis", "active")
	nodes := s.startNodes(t, "gw", 2, nodeOptions{})
	s.converge(t, 2)

	t.Run("management refuses what a node cannot compile", func(t *testing.T) {
		for _, tc := range []struct{ name, inbound, element string }{
			{"unknown backend", `<set-backend-service backend-id="any" />`, "set-backend-service"},
			{"certificate key", `<validate-jwt header-name="Authorization"><issuer-signing-keys><key certificate-id="any" /></issuer-signing-keys></validate-jwt>`, "validate-jwt"},
			{"unsupported member", `<set-header name="X" exists-action="override"><value>@(context.Request.Url.Path.Normalize())</value></set-header>`, "set-header"},
			{"missing parenthesis", `<set-header name="X" exists-action="override"><value>@(context.Request.Url.Path.ToUpper()</value></set-header>`, ""},
			{"deep nesting", `<set-header name="X" exists-action="override"><value>@(` + strings.Repeat("(", 200) + "1" + strings.Repeat(")", 200) + `)</value></set-header>`, "set-header"},
		} {
			r := s.do(t, http.MethodPut, "/apis/poisoned/operations/onHandshake/policies/policy",
				map[string]any{"properties": map[string]any{"format": "xml", "value": "<policies><inbound><base />" + tc.inbound + "</inbound></policies>"}})
			msg := string(r.Body)
			if r.Status != http.StatusBadRequest || r.ErrorCode() != "ValidationError" || !strings.Contains(msg, "line 1") {
				t.Errorf("%s: %d %s, want 400 ValidationError naming the line", tc.name, r.Status, r.Body)
			}
			if tc.element != "" && !strings.Contains(msg, "'"+tc.element+"'") {
				t.Errorf("%s: message %q does not name %s", tc.name, msg, tc.element)
			}
		}
	})

	// The skewed policy: a validate-jwt this node version cannot compile, saved over a policy
	// the nodes enforce.
	s.handshakePolicy(t, "poisoned", `<policies><inbound><base /><set-header name="X-Before" exists-action="override"><value>1</value></set-header></inbound></policies>`)
	// Sessions opened before the skew: a policy change applies to new handshakes only, so they
	// stay open, and a data change still revokes them.
	var open []*watched
	for _, n := range nodes {
		open = append(open, watchSession(t, n, "opened before", "/poisoned", keyHeader(keyD)))
	}
	publishUnchecked(t, s, "apis/poisoned/operations/onHandshake", `<policies><inbound><base />
		<validate-jwt header-name="Authorization"><issuer-signing-keys><key certificate-id="next-version-cert" /></issuer-signing-keys></validate-jwt>
	</inbound></policies>`)
	s.converge(t, 2)
	for _, n := range nodes {
		st, h, body := handshake(t, n.ws("/poisoned"), keyHeader(keyA))
		wantGatewayError(t, st, h, body, http.StatusInternalServerError, "Internal server error")
		if st, _, body := handshake(t, n.ws("/good"), keyHeader(keyA)); st != http.StatusSwitchingProtocols {
			t.Errorf("%s: good API answered %d %s", n.name, st, body)
		}
		if !strings.Contains(n.log.String(), "policy does not compile on this node") {
			t.Errorf("%s logged no compile failure", n.name)
		}
	}
	wantFailures(t, s, 2, "poisoned")
	for _, w := range open {
		if err := w.echo("still relayed", propagation); err != nil {
			t.Errorf("a session opened before the skewed policy: %v", err)
		}
	}

	// Later changes apply on both nodes, at once.
	start := time.Now()
	s.wsAPI(t, "fresh", "fresh", be.wsURL("/fresh"), nil)
	s.must(t, []int{200, 204}, http.MethodPost, "/subscriptions/a/regeneratePrimaryKey", nil)
	s.must(t, []int{200}, http.MethodPatch, "/subscriptions/b", map[string]any{"properties": map[string]any{"state": "suspended"}}, "If-Match", "*")
	s.must(t, []int{200}, http.MethodPatch, "/subscriptions/d", map[string]any{"properties": map[string]any{"state": "suspended"}}, "If-Match", "*")
	s.must(t, []int{200, 204}, http.MethodDelete, "/subscriptions/c", nil, "If-Match", "*")
	written := time.Since(start)
	took := eventually(t, 15*time.Second, func() string {
		for _, n := range nodes {
			for _, c := range []struct {
				path, key string
				want      int
			}{{"/fresh", keyB + "x", 401}, {"/good", keyA, 401}, {"/good", keyB, 401}, {"/good", keyC, 401}} {
				if st, _, body := handshake(t, n.ws(c.path), keyHeader(c.key)); st != c.want {
					return fmt.Sprintf("%s %s: %d %s, want %d", n.name, c.path, st, body, c.want)
				}
			}
		}
		for _, w := range open {
			if !w.closed() {
				return fmt.Sprintf("%s on %s: still open after its subscription was suspended", w.label, w.node)
			}
		}
		return ""
	})
	for _, w := range open {
		if w.code != websocket.ClosePolicyViolation {
			t.Errorf("%s on %s: %s, want close 1008", w.label, w.node, w.describeClose())
		}
	}
	t.Logf("five writes took %v; enforced on both nodes %v after the last", written, took)
	if bound := latencyBound(time.Second); took > bound {
		t.Errorf("changes after the poisoned policy took %v to be enforced on both nodes, want at most %v", took, bound)
	}

	// A node started now installs the configuration and becomes ready.
	late := s.startNode(t, "late", nodeOptions{})
	if st, h, body := handshake(t, late.ws("/poisoned"), nil); st != http.StatusUnauthorized {
		t.Errorf("late node, no key: %d %v %s; the key check still comes first", st, h, body)
	}
	s.converge(t, 3)
	wantFailures(t, s, 3, "poisoned")

	// Saving a good policy ends the failure everywhere.
	s.handshakePolicy(t, "poisoned", `<policies><inbound><base /></inbound></policies>`)
	s.converge(t, 3)
	wantFailures(t, s, 3, "")
	keyA2 := s.subscription(t, "a2", "/apis", "active")
	for _, n := range append(nodes, late) {
		eventually(t, 15*time.Second, func() string {
			if st, _, body := handshake(t, n.ws("/poisoned"), keyHeader(keyA2)); st != http.StatusSwitchingProtocols {
				return fmt.Sprintf("%s: fixed API answered %d %s", n.name, st, body)
			}
			return ""
		})
	}
}

// wantFailures checks that n live nodes report a policy failure for api and no other (none
// when api is empty).
func wantFailures(t *testing.T, s *stack, n int, api string) {
	t.Helper()
	r := s.must(t, []int{200}, http.MethodGet, "/gateways/gw/nodes", nil)
	var body struct {
		Value []struct {
			Name       string
			Properties struct {
				Status         string
				FailedAPIs     int `json:"failedApis"`
				PolicyFailures []configwire.PolicyFailure
			}
		}
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("nodes: %v", err)
	}
	live := 0
	for _, nd := range body.Value {
		if nd.Properties.Status != "live" {
			continue
		}
		live++
		var apis []string
		for _, f := range nd.Properties.PolicyFailures {
			apis = append(apis, f.API)
			if f.Scope == "" || f.Policy == "" || f.Line == 0 || f.Error == "" {
				t.Errorf("node %s: failure without scope, element, line or error: %+v", nd.Name, f)
			}
		}
		want := 0
		if api != "" {
			want = 1
		}
		if nd.Properties.FailedAPIs != want || len(apis) != want || (want == 1 && apis[0] != api) {
			t.Errorf("node %s reports failed APIs %v (%d), want [%s]", nd.Name, apis, nd.Properties.FailedAPIs, api)
		}
	}
	if live != n {
		t.Errorf("%d live nodes, want %d", live, n)
	}
}

// publishUnchecked replaces the stored policy of scope (which must exist) with value and
// publishes the change, as a newer management would whose checks this node's version does not
// share: the same transaction a write makes (revision, resource, outbox row), without the
// write-time compile.
func publishUnchecked(t *testing.T, s *stack, scope, value string) {
	t.Helper()
	ctx := context.Background()
	env := s.env
	svc, err := env.Catalog.GetService(ctx, catalog.ServiceRef{Subscription: "sub-e2e", ResourceGroup: "rg-e2e", Name: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, env.Pool, func(tx pgx.Tx) error {
		var rev int64
		if err := tx.QueryRow(ctx, `UPDATE services SET revision = revision + 1 WHERE id = $1 RETURNING revision`, svc.ID).Scan(&rev); err != nil {
			return err
		}
		props, _ := json.Marshal(catalog.PolicyProperties{Value: value, Format: "xml"})
		tag, err := tx.Exec(ctx, `UPDATE resources SET properties = $3, revision = $4 WHERE service_id = $1 AND kind = $5 AND lower(parent) = lower($2)`,
			svc.ID, scope, props, rev, configwire.KindPolicy)
		if err != nil || tag.RowsAffected() != 1 {
			return fmt.Errorf("updating the policy of %s: %v (%d rows)", scope, err, tag.RowsAffected())
		}
		ch := configwire.Change{ServiceID: svc.ID, Revision: rev, Items: []configwire.Item{{Op: configwire.OpPut,
			Entity: configwire.Entity{Kind: configwire.KindPolicy, Parent: scope, Name: catalog.PolicyName, Properties: props, Revision: rev}}}}
		payload, _ := json.Marshal(ch)
		if _, err := tx.Exec(ctx, `INSERT INTO outbox (service_id, revision, payload) VALUES ($1, $2, $3)`, svc.ID, rev, payload); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, outbox.NotifyChannel)
		return err
	})
	if err != nil {
		t.Fatalf("publishing an unchecked policy: %v", err)
	}
}
