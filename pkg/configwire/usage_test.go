package configwire_test

import (
	"strings"
	"testing"
	"time"

	"gatehouse.dev/pkg/configwire"
)

func TestUsageBatchValidate(t *testing.T) {
	t.Parallel()
	m := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	good := func() configwire.UsageBatch {
		return configwire.UsageBatch{NodeID: "n", BatchID: "n:1:1", ServiceID: "s", Gateway: "gw",
			Records: []configwire.UsageRecord{{Minute: m, API: "echo", HandshakesSuccess: 1}}}
	}
	for _, tc := range []struct {
		name  string
		edit  func(b *configwire.UsageBatch)
		valid bool
	}{
		{"valid", func(*configwire.UsageBatch) {}, true},
		{"no records", func(b *configwire.UsageBatch) { b.Records = nil }, true},
		{"no node", func(b *configwire.UsageBatch) { b.NodeID = "" }, false},
		{"no gateway", func(b *configwire.UsageBatch) { b.Gateway = "" }, false},
		{"long batch id", func(b *configwire.UsageBatch) { b.BatchID = strings.Repeat("x", 257) }, false},
		{"minute not whole", func(b *configwire.UsageBatch) { b.Records[0].Minute = m.Add(time.Second) }, false},
		{"no api", func(b *configwire.UsageBatch) { b.Records[0].API = "" }, false},
		{"negative bytes", func(b *configwire.UsageBatch) { b.Records[0].BytesOut = -1 }, false},
		{"refusals", func(b *configwire.UsageBatch) {
			b.Records[0].Refusals = map[string]int64{"401 SubscriptionKeyInvalid": 2}
		}, true},
		{"negative refusals", func(b *configwire.UsageBatch) { b.Records[0].Refusals = map[string]int64{"401": -1} }, false},
		{"negative closes", func(b *configwire.UsageBatch) { b.Records[0].ConnectionsClosed = -1 }, false},
		{"too many records", func(b *configwire.UsageBatch) {
			b.Records = make([]configwire.UsageRecord, configwire.MaxUsageRecords+1)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := good()
			tc.edit(&b)
			if err := b.Validate(); (err == nil) != tc.valid {
				t.Errorf("Validate() = %v, want valid %v", err, tc.valid)
			}
		})
	}
}
