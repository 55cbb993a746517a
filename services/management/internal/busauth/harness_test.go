package busauth_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/management/internal/busauth"
	"gatehouse.dev/management/internal/natsembed"
	"gatehouse.dev/pkg/bus"
)

// testBus is an embedded server with management's connections and an Authorizer admitting the
// tokens of a table that tests change.
type testBus struct {
	srv  *natsembed.Server
	mgmt *nats.Conn
	js   jetstream.JetStream
	auth *busauth.Authorizer

	mu     sync.Mutex
	tokens map[string]busauth.Identity
}

func newTestBus(t *testing.T, ttl time.Duration) *testBus {
	t.Helper()
	ctx := t.Context()
	srv, err := natsembed.Start(ctx, natsembed.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	b := &testBus{srv: srv, tokens: map[string]busauth.Identity{}}
	if b.mgmt, err = nats.Connect(srv.ClientURL(), srv.UserInfo()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.mgmt.Close)
	sys, err := nats.Connect(srv.ClientURL(), srv.SystemUserInfo())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Close)
	a := srv.Auth()
	b.auth, err = busauth.New(busauth.Options{IssuerSeed: a.IssuerSeed, XKeySeed: a.XKeySeed, TTL: ttl, System: sys,
		Verify: func(_ context.Context, token string) (busauth.Identity, error) {
			b.mu.Lock()
			defer b.mu.Unlock()
			id, ok := b.tokens[token]
			if !ok {
				return busauth.Identity{}, busauth.ErrInvalidToken
			}
			return id, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.auth.Serve(ctx, b.mgmt); err != nil {
		t.Fatal(err)
	}
	if b.js, err = jetstream.New(b.mgmt); err != nil {
		t.Fatal(err)
	}
	if _, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: bus.ConfigStream, Subjects: []string{bus.ConfigSubjects},
		Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: bus.UsageStream, Subjects: []string{bus.UsageSubjects},
		Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *testBus) admit(token string, id busauth.Identity) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens[token] = id
}

func (b *testBus) refuse(token string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.tokens, token)
}

// client is a connection with the asynchronous errors the server sent it.
type client struct {
	nc      *nats.Conn
	errs    chan error
	closed  chan struct{}
	dropped chan struct{} // the first disconnection
}

// connect connects as a node with token, taking replies under the inbox prefix of id.
func (b *testBus) connect(t *testing.T, token string, id busauth.Identity, opts ...nats.Option) (*client, error) {
	t.Helper()
	c := &client{errs: make(chan error, 64), closed: make(chan struct{}), dropped: make(chan struct{}, 1)}
	opts = append([]nats.Option{nats.Token(token), nats.CustomInboxPrefix(bus.NodeInboxPrefix(id.ServiceID, id.Gateway)),
		nats.Timeout(10 * time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case c.errs <- err:
			default:
			}
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
		nats.DisconnectErrHandler(func(*nats.Conn, error) {
			select {
			case c.dropped <- struct{}{}:
			default:
			}
		}),
		nats.ReconnectWait(50 * time.Millisecond),
	}, opts...)
	nc, err := nats.Connect(b.srv.ClientURL(), opts...)
	if err != nil {
		return nil, err
	}
	c.nc = nc
	t.Cleanup(nc.Close)
	return c, nil
}

// wantViolation waits for the server's permissions violation for a subject containing part.
func (c *client) wantViolation(t *testing.T, part string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case err := <-c.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), part) {
				return
			}
		case <-timeout:
			t.Fatalf("no permissions violation for a subject with %q", part)
		}
	}
}

// denied runs op, which the server must refuse with a permissions violation for a subject
// containing part, and fails the test unless it does. A refused request is never answered, so
// op's context is canceled once the violation arrived; op must then fail.
func (c *client) denied(t *testing.T, part string, op func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	c.wantViolation(t, part)
	cancel()
	if err := <-done; err == nil {
		t.Errorf("an operation on a subject with %q succeeded", part)
	}
}
