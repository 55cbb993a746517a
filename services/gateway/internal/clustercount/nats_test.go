package clustercount_test

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/pkg/testwait"
)

// natsServer is an in-process NATS server with JetStream, storing in a directory of the
// test so that it can be stopped and started again with its file-stored streams.
type natsServer struct {
	t    *testing.T
	dir  string
	port int
	srv  *server.Server
}

// startNATS starts a JetStream server on a free port; the test stops it at its end.
func startNATS(t *testing.T) *natsServer {
	t.Helper()
	s := &natsServer{t: t, dir: t.TempDir(), port: server.RANDOM_PORT}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// start starts the server, on the port it had before if it ran already.
func (s *natsServer) start() {
	s.t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: s.port, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: s.dir})
	if err != nil {
		s.t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		s.t.Fatal("NATS server not ready")
	}
	s.srv = srv
	s.port = srv.Addr().(*net.TCPAddr).Port
}

// stop shuts the server down; a stopped server's stop does nothing.
func (s *natsServer) stop() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

func (s *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// node is one gateway's NATS connection, as the gateway would hold it: reconnecting forever.
type node struct {
	nc *nats.Conn
	js atomic.Pointer[jetstream.JetStream]
}

// connect opens a node's connection to s; the test closes it at its end.
func connect(t *testing.T, s *natsServer) *node {
	t.Helper()
	nc, err := nats.Connect(s.url(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond),
		nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{nc: nc}
	n.js.Store(&js)
	return n
}

// jetStream is the function the options want.
func (n *node) jetStream() jetstream.JetStream {
	if p := n.js.Load(); p != nil {
		return *p
	}
	return nil
}

// testService is the service of the tests' nodes unless they name another.
const testService = "0b7c6f1e-2d7a-4c1e-9a57-1f0e6c1d2a3b"

// serviceID is the ServiceID option of a node of service id.
func serviceID(id string) func() string { return func() string { return id } }

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, d, what, cond)
}
