package configwire_test

import (
	"strings"
	"testing"
	"time"

	"gatehouse.dev/pkg/configwire"
)

func TestConnectionLogBatchValidate(t *testing.T) {
	t.Parallel()
	opened := time.Date(2026, 11, 24, 10, 42, 0, 0, time.UTC)
	good := func() configwire.ConnectionLogBatch {
		return configwire.ConnectionLogBatch{NodeID: "n", ServiceID: "s", Gateway: "edge",
			Records: []configwire.ConnectionLogRecord{{CorrelationID: "c1", API: "echo", ClientIP: "203.0.113.7",
				Opened: opened, Closed: opened.Add(time.Second), CloseCode: 1008, ClosedBy: "gateway", Reason: "revoked"}}}
	}
	for _, tc := range []struct {
		name  string
		edit  func(b *configwire.ConnectionLogBatch)
		valid bool
	}{
		{"valid", func(*configwire.ConnectionLogBatch) {}, true},
		{"no records", func(b *configwire.ConnectionLogBatch) { b.Records = nil }, true},
		{"no gateway", func(b *configwire.ConnectionLogBatch) { b.Gateway = "" }, false},
		{"no correlation id", func(b *configwire.ConnectionLogBatch) { b.Records[0].CorrelationID = "" }, false},
		{"closed before opened", func(b *configwire.ConnectionLogBatch) { b.Records[0].Closed = opened.Add(-time.Second) }, false},
		{"close code 0", func(b *configwire.ConnectionLogBatch) { b.Records[0].CloseCode = 0 }, false},
		{"client ip not an address", func(b *configwire.ConnectionLogBatch) { b.Records[0].ClientIP = "<script>" }, false},
		{"long detail", func(b *configwire.ConnectionLogBatch) { b.Records[0].Detail = strings.Repeat("x", 513) }, false},
		{"negative bytes", func(b *configwire.ConnectionLogBatch) { b.Records[0].BytesIn = -1 }, false},
		{"too many records", func(b *configwire.ConnectionLogBatch) {
			b.Records = make([]configwire.ConnectionLogRecord, configwire.MaxConnectionLogRecords+1)
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
