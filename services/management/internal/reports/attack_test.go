package reports_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"gatehouse.dev/management/internal/gatewaykeys/gatewaykeystest"
	"gatehouse.dev/management/internal/reports"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/testwait"
)

// TestAttackForgedUsageBatch: every node of a service may publish on the service's usage
// subject, so a batch proves its gateway with that gateway's node key (issue 12). A batch that
// is unsigned, claims another gateway than its key's, or carries an authentication of other
// bytes is dropped and counted, and stores nothing; the genuine batch published after them is
// stored.
func TestAttackForgedUsageBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	svc := e.service(t, "attacked")
	victim := func(id string) configwire.UsageBatch {
		return configwire.UsageBatch{NodeID: "victim-node", BatchID: id, ServiceID: svc, Gateway: "victim", Records: []configwire.UsageRecord{
			{Minute: minute(0), API: "chat", Subscription: "alice", HandshakesSuccess: 1000}}}
	}
	innocent := victim("innocent")
	innocent.Records[0].HandshakesSuccess = 1
	innocentAuth := ""
	for _, tc := range []struct {
		name string
		auth func(subject string, data []byte) string
		want string
	}{
		{"unsigned", func(string, []byte) string { return "" }, "usage unsigned"},
		// A node of gateway "mine" knows its own node key, not the victim's.
		{"the key of another gateway", func(s string, d []byte) string { return gatewaykeystest.NodeKey(svc, "mine").Sign(s, d) }, "usage forged"},
		{"the key of the gateway of another service", func(s string, d []byte) string { return gatewaykeystest.NodeKey(svc+"x", "victim").Sign(s, d) }, "usage forged"},
		{"the victim's authentication of other bytes", func(string, []byte) string {
			if innocentAuth == "" {
				innocentAuth = e.authOf(t, innocent)
			}
			return innocentAuth
		}, "usage forged"},
		{"garbage", func(string, []byte) string { return "ktest.!!!" }, "usage forged"},
	} {
		before := len(e.rejected.List())
		e.publishAs(t, victim(tc.name), tc.name, tc.auth)
		testwait.Until(t, 10*time.Second, tc.name+": the batch handled", func() bool { return len(e.rejected.List()) > before })
		if got := e.rejected.List()[before:]; !slices.Equal(got, []string{tc.want}) {
			t.Errorf("%s: rejections %v, want %q", tc.name, got, tc.want)
		}
	}
	// The stream is a work queue: once the genuine batch is stored and the stream empty, every
	// forged one before it was handled; none stored a row.
	genuine := victim("genuine")
	genuine.Records[0].HandshakesSuccess = 2
	e.publish(t, genuine, genuine.BatchID)
	e.waitStored(t, svc, 1)
	rows, _, err := e.store.Report(context.Background(), svc, reports.Query{By: reports.ByAPI, Filter: reports.Filter{From: day}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].HandshakesSuccess != 2 {
		t.Errorf("stored %+v, want the genuine batch alone", rows)
	}
}

// authOf is the node authentication a node of b's gateway gives b.
func (e *env) authOf(t *testing.T, b configwire.UsageBatch) string {
	t.Helper()
	data, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return gatewaykeystest.NodeKey(b.ServiceID, b.Gateway).Sign(bus.UsageSubject(b.ServiceID), data)
}
