package connlog_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"gatehouse.dev/gateway/internal/connlog"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

// startNATS runs a NATS server for the test and returns a connection to it.
func startNATS(t *testing.T) *nats.Conn {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestRecordsWaitForTheNodeThenGoSigned queues records before the node has a configuration and
// a key, then checks that they are sent in one batch on the gateway's subject, with a node
// authentication management verifies, once the node has both.
func TestRecordsWaitForTheNodeThenGoSigned(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	key := configwire.DeriveNodeKey("k1", []byte("root-secret-of-management-0123456"), "svc-1", "edge", []byte("gateway key"))
	var configured bool
	rec := connlog.New(connlog.Options{NodeID: "node-1", Interval: 20 * time.Millisecond,
		Target: func() (string, string) {
			if !configured {
				return "", ""
			}
			return "svc-1", "edge.eu"
		},
		Key: func() (configwire.NodeKey, bool) { return key, configured }})
	sub, err := nc.SubscribeSync(bus.ConnectionLogSubjects)
	if err != nil {
		t.Fatal(err)
	}
	opened := time.Date(2026, 11, 24, 10, 42, 0, 0, time.UTC)
	want := configwire.ConnectionLogRecord{CorrelationID: "c1", API: "echo", Subscription: "alice", ClientIP: "203.0.113.7",
		Opened: opened, Closed: opened.Add(5 * time.Second), MessagesIn: 3, BytesIn: 21, CloseCode: 1008,
		ClosedBy: "gateway", Reason: "revoked", Detail: "subscription key revoked"}
	rec.Add(want)
	if err := rec.Flush(); err == nil {
		t.Fatal("Flush without a connection, configuration or key succeeded")
	}
	rec.UseConn(nc)
	configured = true
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != bus.ConnectionLogSubject("svc-1", "edge.eu") {
		t.Errorf("subject %q", m.Subject)
	}
	if err := key.Verify(m.Subject, m.Data, m.Header.Get(bus.HeaderNodeAuth)); err != nil {
		t.Errorf("node authentication: %v", err)
	}
	var b configwire.ConnectionLogBatch
	if err := json.Unmarshal(m.Data, &b); err != nil {
		t.Fatal(err)
	}
	if err := b.Validate(); err != nil {
		t.Errorf("the batch does not validate: %v", err)
	}
	wantBatch := configwire.ConnectionLogBatch{NodeID: "node-1", ServiceID: "svc-1", Gateway: "edge.eu", Records: []configwire.ConnectionLogRecord{want}}
	if diff := cmp.Diff(wantBatch, b); diff != "" {
		t.Errorf("batch (-want +got):\n%s", diff)
	}
}

// TestRunSendsWithinAnInterval checks that Run sends a record without Flush being called,
// and once more when its context ends.
func TestRunSendsWithinAnInterval(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	key := configwire.DeriveNodeKey("k1", []byte("root"), "svc-1", "edge", []byte("gateway key"))
	rec := connlog.New(connlog.Options{NodeID: "node-1", Interval: 10 * time.Millisecond,
		Target: func() (string, string) { return "svc-1", "edge" },
		Key:    func() (configwire.NodeKey, bool) { return key, true }})
	rec.UseConn(nc)
	sub, err := nc.SubscribeSync(bus.ConnectionLogSubject("svc-1", "edge"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = rec.Run(ctx) }()
	now := time.Now().UTC()
	rec.Add(configwire.ConnectionLogRecord{CorrelationID: "c1", API: "echo", Opened: now, Closed: now, CloseCode: 1000})
	if _, err := sub.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("no batch from Run: %v", err)
	}
	rec.Add(configwire.ConnectionLogRecord{CorrelationID: "c2", API: "echo", Opened: now, Closed: now, CloseCode: 1001})
	cancel()
	<-done
	for {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("the record added before shutdown was not sent: %v", err)
		}
		var b configwire.ConnectionLogBatch
		if err := json.Unmarshal(m.Data, &b); err != nil {
			t.Fatal(err)
		}
		if len(b.Records) == 1 && b.Records[0].CorrelationID == "c2" {
			return
		}
	}
}

// TestNilRecorderRecordsNothing: traffic calls Add on a nil Recorder when there is none.
func TestNilRecorderRecordsNothing(t *testing.T) {
	var rec *connlog.Recorder
	rec.Add(configwire.ConnectionLogRecord{CorrelationID: "c"})
}
