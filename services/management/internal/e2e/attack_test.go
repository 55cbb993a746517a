package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
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

	// The attacker's own connection to the bus, past its authentication (stolen management
	// credentials, a compromised NATS server): what follows must hold even then, because
	// nodes trust only what management signed.
	nc, err := nats.Connect(s.env.NATS.ClientURL(), s.env.NATS.UserInfo())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
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
