package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

// TestAttackBus plays someone who can publish on the bus against a real management and a real
// gateway node (issue 12): a change of the next revision letting in a key of their choice,
// published ahead of management's real change of that revision (a suspension) under the
// message id management used to give it, and a heartbeat advertising a node URL of theirs.
// The key never gets 101, the suspension is enforced, and the forged node is neither listed
// nor dialed by the test console.
func TestAttackBus(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	be := newBackend(t, "main", "")
	s.wsAPI(t, "chat", "chat", be.wsURL("/chat"), nil)
	key := s.subscription(t, "a", "/apis", "active")
	n := s.startNode(t, "gw1", nodeOptions{})
	eventually(t, 20*time.Second, func() string {
		if st, _, _ := handshake(t, n.ws("/chat"), keyHeader(key)); st != http.StatusSwitchingProtocols {
			return "the node does not admit the key yet: " + strconv.Itoa(st)
		}
		return ""
	})
	ctx := context.Background()
	svc, err := s.env.Catalog.GetService(ctx, catalog.ServiceRef{Subscription: "sub-e2e", ResourceGroup: "rg-e2e", Name: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	var rev int64
	if err := s.env.Pool.QueryRow(ctx, "SELECT revision FROM services WHERE id = $1", svc.ID).Scan(&rev); err != nil {
		t.Fatal(err)
	}

	// What follows must hold even on a bus whose authentication the attacker got past,
	// because nodes trust only what management signed.
	nc, js := s.attackerBus(t)
	const attackerKey = "attacker-chosen-key-0123456789"
	forged := configwire.Change{ServiceID: svc.ID, Revision: rev + 1, Items: []configwire.Item{{Op: configwire.OpPut,
		Entity: configwire.Entity{Kind: configwire.KindSubscription, Name: "evil", Revision: rev + 1,
			Properties: json.RawMessage(`{"scope":"` + s.svc + `/apis","state":"active","displayName":"evil"}`),
			KeyHashes:  []string{configwire.KeyHash(attackerKey), configwire.KeyHash(attackerKey + "2")}}}}}
	data, err := json.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(bus.ConfigSubject(svc.ID))
	msg.Data = data
	msg.Header.Set(bus.HeaderRevision, strconv.FormatInt(rev+1, 10))
	msg.Header.Set(bus.HeaderService, svc.ID)
	msg.Header.Set(bus.HeaderSignature, "k0000000000000000.AAAA")
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(svc.ID+":"+strconv.FormatInt(rev+1, 10))); err != nil {
		t.Fatal(err)
	}

	// Management's real change of that revision: the suspension.
	s.must(t, []int{200}, http.MethodPatch, "/subscriptions/a", map[string]any{"properties": map[string]any{"state": "suspended"}}, "If-Match", "*")
	eventually(t, propagation, func() string {
		if st, _, _ := handshake(t, n.ws("/chat"), keyHeader(key)); st != http.StatusUnauthorized {
			return "the suspended key still answers " + strconv.Itoa(st)
		}
		return ""
	})
	if st, _, _ := handshake(t, n.ws("/chat"), keyHeader(attackerKey)); st != http.StatusUnauthorized {
		t.Errorf("the attacker's key: %d, want 401", st)
	}

	// A forged heartbeat of a node of gateway gw advertising the attacker's URL.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	dialed := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			dialed <- struct{}{}
			c.Close()
		}
	}()
	hb := configwire.Heartbeat{NodeID: "evil-node", ServiceID: svc.ID, Gateway: "gw", Revision: rev + 1, Healthy: true,
		Started: time.Now(), Sent: time.Now(), Interval: time.Hour, URL: "ws://" + ln.Addr().String()}
	raw, err := json.Marshal(hb)
	if err != nil {
		t.Fatal(err)
	}
	subject := bus.HeartbeatSubject(svc.ID, "gw")
	// Unsigned, and signed with a node key the attacker made up.
	// The key id is the real one (any authenticated message shows it); the root is a guess.
	made := configwire.DeriveNodeKey(s.env.Keys.Signer().KeyID(), []byte("guess"), svc.ID, "gw", []byte("guess"))
	for _, auth := range []string{"", made.Sign(subject, raw)} {
		m := &nats.Msg{Subject: subject, Data: raw, Header: nats.Header{}}
		if auth != "" {
			m.Header.Set(bus.HeaderNodeAuth, auth)
		}
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// The real node's next heartbeat (sent after it installs a revision) passes the forged ones
	// on the same subscription: by then they were handled.
	s.must(t, []int{200}, http.MethodPatch, "/subscriptions/a", map[string]any{"properties": map[string]any{"state": "active"}}, "If-Match", "*")
	eventually(t, propagation, func() string {
		body := string(s.must(t, []int{200}, "GET", "/gateways/gw/nodes", nil).Body)
		if !strings.Contains(body, `"revision":`+strconv.FormatInt(rev+2, 10)) {
			return "the real node has not reported revision " + strconv.FormatInt(rev+2, 10) + ": " + body
		}
		if strings.Contains(body, "evil-node") {
			return "the forged node is listed: " + body
		}
		return ""
	})
	c := s.env.OpenConsole(t, map[string]any{"authorization": "Bearer " + s.env.Token, "service": s.svc, "api": "chat",
		"node": "evil-node", "query": map[string]string{"subscription-key": key}})
	if ev := c.Next(); ev.Type != "error" {
		t.Errorf("the console to the forged node: %+v, want an error", ev)
	}
	select {
	case <-dialed:
		t.Error("management dialed the forged node's URL")
	default:
	}
}

// TestAttackNodeKeyAfterRegeneration plays someone who holds a node's gateway token, and so
// the node key the snapshot call hands out with it, and a place on the bus (issue 12): once the
// gateway key that signed the token is regenerated, management drops and counts their
// heartbeats and usage batches, so they neither list a node nor report usage; a node key of
// the gateway's other key keeps working.
func TestAttackNodeKeyAfterRegeneration(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := t.Context()
	svc, err := s.env.Catalog.GetService(ctx, catalog.ServiceRef{Subscription: "sub-e2e", ResourceGroup: "rg-e2e", Name: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	stolen, kept := s.nodeKey(t, s.token(t, "primary")), s.nodeKey(t, s.token(t, "secondary"))
	nc, js := s.attackerBus(t)

	s.must(t, []int{204}, http.MethodPost, "/gateways/gw/regenerateKey", map[string]any{"keyType": "primary"})
	// The regeneration reaches management's cache of gateway keys through a notification.
	eventually(t, 10*time.Second, func() string {
		const probe = "probe"
		if s.env.App.NodeAuth().Verify(probe, nil, stolen.Sign(probe, nil), svc.ID, "gw") == nil {
			return "management still accepts the node key of the regenerated gateway key"
		}
		return ""
	})
	minute := time.Now().UTC().Truncate(time.Minute)
	for _, as := range []struct {
		node string
		key  configwire.NodeKey
	}{{"stolen-node", stolen}, {"kept-node", kept}} {
		hb := configwire.Heartbeat{NodeID: as.node, ServiceID: svc.ID, Gateway: "gw", Revision: 1, Healthy: true,
			Started: time.Now(), Sent: time.Now(), Interval: time.Hour}
		raw, err := json.Marshal(hb)
		if err != nil {
			t.Fatal(err)
		}
		m := &nats.Msg{Subject: bus.HeartbeatSubject(svc.ID, "gw"), Data: raw, Header: nats.Header{}}
		m.Header.Set(bus.HeaderNodeAuth, as.key.Sign(m.Subject, raw))
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		b := configwire.UsageBatch{NodeID: as.node, BatchID: as.node + ":1", ServiceID: svc.ID, Gateway: "gw",
			Records: []configwire.UsageRecord{{Minute: minute, API: "chat", HandshakesSuccess: 1}}}
		if raw, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
		u := nats.NewMsg(bus.UsageSubject(svc.ID))
		u.Data = raw
		u.Header.Set(bus.HeaderNodeAuth, as.key.Sign(u.Subject, raw))
		if _, err := js.PublishMsg(ctx, u, jetstream.WithMsgID(b.BatchID)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, func() string {
		var nodes []string
		for _, n := range s.fleet(t, "").nodes {
			nodes = append(nodes, n.Name)
		}
		var stored []string
		rows, err := s.env.Pool.Query(ctx, "SELECT node_id FROM usage WHERE service_id = $1 ORDER BY node_id", svc.ID)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			stored = append(stored, n)
		}
		rows.Close()
		hb, usage := s.rejected(t, "heartbeat", "forged"), s.rejected(t, "usage", "forged")
		if !slices.Equal(nodes, []string{"kept-node"}) || !slices.Equal(stored, []string{"kept-node"}) || hb != 1 || usage != 1 {
			return fmt.Sprintf("nodes listed %v, usage stored of %v, forged heartbeats %v and usage batches %v counted; want kept-node alone and one of each counted",
				nodes, stored, hb, usage)
		}
		return ""
	})
}

// attackerBus is an attacker's own connection to the bus, past its authentication (stolen
// management credentials, a compromised NATS server).
func (s *stack) attackerBus(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.env.NATS.ClientURL(), s.env.NATS.UserInfo())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// nodeKey is the node key management hands a node presenting token with its snapshot.
func (s *stack) nodeKey(t *testing.T, token string) configwire.NodeKey {
	t.Helper()
	r := s.env.Must(t, []int{200}, http.MethodGet, configwire.SnapshotPath, nil, "Authorization", "GatewayKey "+token)
	k, err := configwire.ParseNodeKey(r.Header.Get(configwire.NodeKeyHeader))
	if err != nil {
		t.Fatalf("the snapshot's node key: %v", err)
	}
	return k
}

// rejected is management's count of node messages of kind dropped for reason
// (gatehouse_management_node_messages_rejected_total).
func (s *stack) rejected(t *testing.T, kind, reason string) float64 {
	t.Helper()
	families, err := s.env.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "gatehouse_management_node_messages_rejected_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == kind && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
