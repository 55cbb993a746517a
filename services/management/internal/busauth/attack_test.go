package busauth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/management/internal/busauth"
	"gatehouse.dev/pkg/bus"
)

var (
	nodeA  = busauth.Identity{ServiceID: "0b7c6f1e-2d7a-4c1e-9a57-1f0e6c1d2a3b", Gateway: "edge"}
	nodeA2 = busauth.Identity{ServiceID: nodeA.ServiceID, Gateway: "edge2"}
	nodeB  = busauth.Identity{ServiceID: "5f0c9a4e-8f6b-4b1a-b1f2-3c4d5e6f7a8b", Gateway: "edge"}
)

// TestAttackWithoutCredentials: no credentials, a forged token, or a token of a gateway since
// refused: the bus refuses the connection (issue 12).
func TestAttackWithoutCredentials(t *testing.T) {
	t.Parallel()
	b := newTestBus(t, 0)
	b.admit("tok-a", nodeA)
	for _, tc := range []struct {
		name string
		opt  nats.Option
	}{
		{"anonymous", func(*nats.Options) error { return nil }},
		{"forged token", nats.Token("tok-forged")},
		{"management's user without its password", nats.UserInfo(b.srv.Auth().User, "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := nats.Connect(b.srv.ClientURL(), tc.opt, nats.Timeout(10*time.Second))
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("err = %v, want an authorization violation", err)
			}
		})
	}
	if _, err := b.connect(t, "tok-a", nodeA); err != nil {
		t.Fatalf("a node with a valid token: %v", err)
	}
}

// TestAttackNodePermissions: a node of service A reads A's configuration, publishes its own
// heartbeats and A's usage, and nothing else: not B's configuration, not a configuration
// change, not another gateway's heartbeat, not the replies of other clients.
func TestAttackNodePermissions(t *testing.T) {
	t.Parallel()
	b := newTestBus(t, 0)
	b.admit("tok-a", nodeA)
	ctx := t.Context()
	c, err := b.connect(t, "tok-a", nodeA)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(c.nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.js.Publish(ctx, bus.ConfigSubject(nodeA.ServiceID), []byte(`{"revision":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.js.Publish(ctx, bus.ConfigSubject(nodeB.ServiceID), []byte(`{"revision":7}`)); err != nil {
		t.Fatal(err)
	}

	t.Run("reads its own service's configuration", func(t *testing.T) {
		cons, err := js.OrderedConsumer(ctx, bus.ConfigStream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{bus.ConfigSubject(nodeA.ServiceID)}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy})
		if err != nil {
			t.Fatal(err)
		}
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Data()) != `{"revision":1}` {
			t.Errorf("got %s", m.Data())
		}
	})
	t.Run("cannot read another service's configuration", func(t *testing.T) {
		cons, err := js.OrderedConsumer(ctx, bus.ConfigStream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{bus.ConfigSubject(nodeB.ServiceID)}})
		if err == nil {
			if m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second)); err == nil {
				t.Fatalf("read B's change %s", m.Data())
			}
		}
		c.wantViolation(t, bus.ConfigSubject(nodeB.ServiceID))
		if _, err := c.nc.Subscribe(bus.ConfigSubjects, func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
		c.wantViolation(t, `"`+bus.ConfigSubjects+`"`)
		if _, err := js.OrderedConsumer(ctx, bus.ConfigStream, jetstream.OrderedConsumerConfig{}); err == nil {
			t.Error("created an unfiltered consumer on the configuration stream")
		}
		c.wantViolation(t, "$JS.API.CONSUMER.CREATE."+bus.ConfigStream)
	})
	t.Run("cannot publish configuration", func(t *testing.T) {
		before := streamMsgs(t, b, bus.ConfigStream)
		if err := c.nc.Publish(bus.ConfigSubject(nodeA.ServiceID), []byte(`{"revision":2}`)); err != nil {
			t.Fatal(err)
		}
		c.wantViolation(t, `"`+bus.ConfigSubject(nodeA.ServiceID)+`"`)
		if _, err := js.Publish(ctx, bus.ConfigSubject(nodeA.ServiceID), []byte(`{"revision":2}`), jetstream.WithMsgID(bus.ConfigMsgID(nodeA.ServiceID, 2, "forged"))); err == nil {
			t.Error("a JetStream publication of a change was acknowledged")
		}
		if err := b.mgmt.Flush(); err != nil {
			t.Fatal(err)
		}
		if after := streamMsgs(t, b, bus.ConfigStream); after != before {
			t.Errorf("the configuration stream went from %d to %d messages", before, after)
		}
		if err := js.DeleteStream(ctx, bus.ConfigStream); err == nil {
			t.Error("deleted the configuration stream")
		}
		c.wantViolation(t, "$JS.API.STREAM.DELETE."+bus.ConfigStream)
	})
	t.Run("heartbeats of its own gateway only", func(t *testing.T) {
		sub, err := b.mgmt.SubscribeSync(bus.HeartbeatSubjects)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := b.mgmt.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, id := range []busauth.Identity{nodeA2, nodeB} {
			if err := c.nc.Publish(bus.HeartbeatSubject(id.ServiceID, id.Gateway), []byte("forged")); err != nil {
				t.Fatal(err)
			}
			c.wantViolation(t, bus.HeartbeatSubject(id.ServiceID, id.Gateway))
		}
		if err := c.nc.Publish(bus.HeartbeatSubject(nodeA.ServiceID, nodeA.Gateway), []byte("own")); err != nil {
			t.Fatal(err)
		}
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil || string(m.Data) != "own" {
			t.Fatalf("management got %v, %v; want the node's own heartbeat and nothing forged before it", m, err)
		}
	})
	t.Run("usage of its own service only", func(t *testing.T) {
		if _, err := js.Publish(ctx, bus.UsageSubject(nodeA.ServiceID), []byte("{}")); err != nil {
			t.Errorf("own usage: %v", err)
		}
		if err := c.nc.Publish(bus.UsageSubject(nodeB.ServiceID), []byte("{}")); err != nil {
			t.Fatal(err)
		}
		c.wantViolation(t, bus.UsageSubject(nodeB.ServiceID))
	})
	t.Run("no other client's traffic", func(t *testing.T) {
		for _, subject := range []string{"_INBOX.>", bus.HeartbeatSubjects, bus.ConnectionsSubject(nodeB.ServiceID),
			bus.NodeInboxPrefix(nodeB.ServiceID, nodeB.Gateway) + ".>", "$SYS.REQ.USER.AUTH", ">"} {
			if _, err := c.nc.Subscribe(subject, func(*nats.Msg) {}); err != nil {
				t.Fatal(err)
			}
			c.wantViolation(t, `"`+subject+`"`)
		}
	})
	t.Run("answers live-connection requests of its service", func(t *testing.T) {
		sub, err := c.nc.Subscribe(bus.ConnectionsSubject(nodeA.ServiceID), func(m *nats.Msg) { _ = m.Respond([]byte("here")) })
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := c.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		m, err := b.mgmt.Request(bus.ConnectionsSubject(nodeA.ServiceID), nil, 10*time.Second)
		if err != nil || string(m.Data) != "here" {
			t.Fatalf("reply %v, %v", m, err)
		}
	})
}

// streamMsgs is how many messages stream holds, as management sees it.
func streamMsgs(t *testing.T, b *testBus, stream string) uint64 {
	t.Helper()
	s, err := b.js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestAttackRevokedGatewayCutOff: once a gateway's token is no longer valid (keys
// regenerated, gateway deleted), Revoke disconnects its nodes at once and their reconnections
// are refused; other gateways keep their connections.
func TestAttackRevokedGatewayCutOff(t *testing.T) {
	t.Parallel()
	b := newTestBus(t, 0)
	b.admit("tok-a", nodeA)
	b.admit("tok-a2", nodeA2)
	victim, err := b.connect(t, "tok-a", nodeA)
	if err != nil {
		t.Fatal(err)
	}
	other, err := b.connect(t, "tok-a2", nodeA2)
	if err != nil {
		t.Fatal(err)
	}
	b.refuse("tok-a")
	start := time.Now()
	n, err := b.auth.Revoke(t.Context(), nodeA.ServiceID, "EDGE") // names are case-insensitive
	if err != nil || n != 1 {
		t.Fatalf("Revoke = %d, %v; want 1 connection", n, err)
	}
	select {
	case <-victim.dropped:
		t.Logf("the revoked node was disconnected %v after Revoke started", time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked node is still connected")
	}
	select {
	case <-victim.closed: // its reconnections were refused
	case <-time.After(30 * time.Second):
		t.Fatalf("the revoked node's connection is %v, want closed after refused reconnections", victim.nc.Status())
	}
	if err := victim.nc.Publish(bus.HeartbeatSubject(nodeA.ServiceID, nodeA.Gateway), nil); err == nil {
		t.Error("the revoked node still publishes")
	}
	if !other.nc.IsConnected() {
		t.Error("another gateway's node lost its connection")
	}
	if err := other.nc.Flush(); err != nil {
		t.Errorf("another gateway's node: %v", err)
	}
}

// TestAttackCredentialsExpire: a node whose gateway became invalid without Revoke reaching it
// (no system connection, a missed call) keeps the bus only until its user JWT expires; a valid
// one is authorized again when it reconnects.
func TestAttackCredentialsExpire(t *testing.T) {
	t.Parallel()
	b := newTestBus(t, time.Second)
	b.admit("tok-a", nodeA)
	b.admit("tok-b", nodeB)
	victim, err := b.connect(t, "tok-a", nodeA)
	if err != nil {
		t.Fatal(err)
	}
	valid, err := b.connect(t, "tok-b", nodeB)
	if err != nil {
		t.Fatal(err)
	}
	b.refuse("tok-a")
	start := time.Now()
	select {
	case <-victim.closed:
		t.Logf("the refused node lost the bus %v after its token stopped being valid (TTL 1s)", time.Since(start))
	case <-time.After(30 * time.Second):
		t.Fatal("the refused node kept the bus past its credentials' expiry")
	}
	<-valid.dropped                          // its JWT expired too
	if err := valid.nc.Flush(); err != nil { // waits for the reconnection
		t.Errorf("the valid node after its credentials expired: %v", err)
	}
	if valid.nc.Stats().Reconnects == 0 {
		t.Errorf("the valid node was not authorized again")
	}
}

// TestAttackCounterScope: a node of service A shares A's fleet counters (rate limits, quotas,
// connection counts, evictions) and cannot read, write, delete or watch B's, nor ask B's nodes
// to evict, by the KV client or by the JetStream API calls it does not need (issue 12).
func TestAttackCounterScope(t *testing.T) {
	t.Parallel()
	b := newTestBus(t, 0)
	b.admit("tok-a", nodeA)
	b.admit("tok-a2", nodeA2)
	b.admit("tok-b", nodeB)
	ctx := t.Context()
	a, err := b.connect(t, "tok-a", nodeA)
	if err != nil {
		t.Fatal(err)
	}
	victim, err := b.connect(t, "tok-b", nodeB)
	if err != nil {
		t.Fatal(err)
	}
	jsA, jsB := nodeJetStream(t, a), nodeJetStream(t, victim)
	for _, bucket := range []string{bus.RatesBucket, bus.QuotasBucket, bus.ConnectionsBucket} {
		t.Run(bucket, func(t *testing.T) {
			// The first node creates the bucket, as a node does when it is missing.
			kvA, err := jsA.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 1, Storage: jetstream.MemoryStorage,
				LimitMarkerTTL: time.Second})
			if err != nil {
				t.Fatalf("node A creates the bucket: %v", err)
			}
			kvB, err := jsB.KeyValue(ctx, bucket)
			if err != nil {
				t.Fatalf("node B binds the bucket: %v", err)
			}
			ownA, ownB := bus.CounterKey(nodeA.ServiceID, "k"), bus.CounterKey(nodeB.ServiceID, "k")
			if _, err := kvB.Put(ctx, ownB, []byte("B's count")); err != nil {
				t.Fatalf("node B writes its own key: %v", err)
			}
			t.Run("its own service's keys", func(t *testing.T) {
				rev, err := kvA.Create(ctx, ownA, []byte("1"))
				if err != nil {
					t.Fatalf("create: %v", err)
				}
				if _, err := kvA.Update(ctx, ownA, []byte("2"), rev); err != nil {
					t.Fatalf("update: %v", err)
				}
				if e, err := kvA.Get(ctx, ownA); err != nil || string(e.Value()) != "2" {
					t.Fatalf("get: %v, %v", e, err)
				}
				if bucket == bus.ConnectionsBucket {
					// Nodes follow the connection counts, and only those.
					w, err := kvA.Watch(ctx, bus.CounterKeys(nodeA.ServiceID))
					if err != nil {
						t.Fatalf("watch: %v", err)
					}
					if e := <-w.Updates(); e == nil || e.Key() != ownA || string(e.Value()) != "2" {
						t.Fatalf("watch delivered %v, want %s = 2", e, ownA)
					}
					if err := w.Stop(); err != nil {
						t.Fatalf("stopping the watch: %v", err)
					}
				} else {
					a.denied(t, "$JS.API.CONSUMER.CREATE.KV_"+bucket, func(ctx context.Context) error {
						_, err := kvA.Watch(ctx, bus.CounterKeys(nodeA.ServiceID))
						return err
					})
				}
				if err := kvA.Delete(ctx, ownA); err != nil {
					t.Fatalf("delete: %v", err)
				}
			})
			t.Run("not another service's", func(t *testing.T) {
				keyOfB := "$KV." + bucket + "." + bus.ServiceToken(nodeB.ServiceID)
				a.denied(t, "$JS.API.DIRECT.GET.KV_"+bucket+"."+keyOfB, func(ctx context.Context) error { _, err := kvA.Get(ctx, ownB); return err })
				for _, write := range []func(ctx context.Context) error{
					func(ctx context.Context) error { _, err := kvA.Put(ctx, ownB, []byte("0")); return err },
					func(ctx context.Context) error {
						_, err := kvA.Create(ctx, bus.CounterKey(nodeB.ServiceID, "new"), []byte("0"))
						return err
					},
					func(ctx context.Context) error { return kvA.Delete(ctx, ownB) },
					func(ctx context.Context) error { return kvA.Purge(ctx, ownB) },
				} {
					a.denied(t, `"`+keyOfB+".", write)
				}
				for _, filter := range []string{bus.CounterKeys(nodeB.ServiceID), ownB, ">", "*.k"} {
					a.denied(t, "$JS.API.CONSUMER.CREATE.KV_"+bucket, func(ctx context.Context) error {
						w, err := kvA.Watch(ctx, filter)
						if err == nil {
							w.Stop()
						}
						return err
					})
				}
				// The API calls a node does not need, whose bodies could name B's keys.
				for _, call := range []struct{ subject, body string }{
					{"$JS.API.STREAM.MSG.GET.KV_" + bucket, `{"last_by_subj":"$KV.` + bucket + `.` + ownB + `"}`},
					{"$JS.API.DIRECT.GET.KV_" + bucket, `{"last_by_subj":"$KV.` + bucket + `.` + ownB + `"}`},
					{"$JS.API.STREAM.UPDATE.KV_" + bucket, `{"name":"KV_` + bucket + `","subjects":["$KV.` + bucket + `.>"],"max_msgs_per_subject":1}`},
					{"$JS.API.STREAM.PURGE.KV_" + bucket, `{"filter":"$KV.` + bucket + `.` + ownB + `"}`},
					{"$JS.API.CONSUMER.CREATE.KV_" + bucket + ".spy", `{"stream_name":"KV_` + bucket + `","config":{"name":"spy"}}`},
					{"$JS.API.CONSUMER.MSG.NEXT.KV_" + bucket + ".spy", `{"batch":1}`},
					{"$JS.API.CONSUMER.INFO.KV_" + bucket + ".spy", ``},
					{"$JS.API.CONSUMER.LIST.KV_" + bucket, `{}`},
				} {
					a.denied(t, `"`+call.subject+`"`, func(ctx context.Context) error {
						_, err := a.nc.RequestWithContext(ctx, call.subject, []byte(call.body))
						return err
					})
				}
				e, err := kvB.Get(ctx, ownB)
				if err != nil || string(e.Value()) != "B's count" {
					t.Errorf("B's key after A's attempts: %v, %v", e, err)
				}
			})
		})
	}
	t.Run("evictions of its own service only", func(t *testing.T) {
		a2, err := b.connect(t, "tok-a2", nodeA2)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := a2.nc.Subscribe(bus.EvictSubjects(nodeA.ServiceID), func(m *nats.Msg) { _ = m.Respond([]byte("closed")) })
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := a2.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if m, err := a.nc.Request(bus.EvictSubject(nodeA.ServiceID, "k"), nil, 10*time.Second); err != nil || string(m.Data) != "closed" {
			t.Fatalf("eviction request to another node of A: %v, %v", m, err)
		}
		if err := a.nc.Publish(bus.EvictSubject(nodeB.ServiceID, "k"), nil); err != nil {
			t.Fatal(err)
		}
		a.wantViolation(t, bus.EvictSubject(nodeB.ServiceID, "k"))
		for _, subject := range []string{bus.EvictSubjects(nodeB.ServiceID), "gatehouse.evict.>", "gatehouse.evict.*.*"} {
			if _, err := a.nc.Subscribe(subject, func(*nats.Msg) {}); err != nil {
				t.Fatal(err)
			}
			a.wantViolation(t, `"`+subject+`"`)
		}
	})
}

// nodeJetStream is the JetStream context of a node's connection.
func nodeJetStream(t *testing.T, c *client) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(c.nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
