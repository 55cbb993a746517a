package configwire

import (
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// UsageBatch is what a gateway node publishes on bus.UsageSubject: its usage rolled up per
// minute, API and subscription. A batch is published until JetStream acknowledges it, so a
// receiver may get it more than once and must count it once (BatchID and the records' keys
// make that possible).
type UsageBatch struct {
	// NodeID identifies the node process (the heartbeat's node id).
	NodeID string `json:"nodeId"`
	// BatchID is bus.UsageBatchID of the batch, unique per node.
	BatchID string `json:"batchId"`
	// ServiceID is the internal id of the node's service, Gateway the name of its gateway
	// resource: the batch is authenticated with that gateway's node key (bus.HeaderNodeAuth),
	// so a node cannot report usage as another gateway's.
	ServiceID string `json:"serviceId"`
	Gateway   string `json:"gateway"`
	// Records hold at most one record per (Minute, API, Subscription); a node reports each
	// such key in one batch only.
	Records []UsageRecord `json:"records"`
}

// UsageRecord is one node's usage of one API by one subscription during one minute.
type UsageRecord struct {
	// Minute is the start of the UTC minute the record covers, a whole minute.
	Minute time.Time `json:"minute"`
	// API is the API's name (its resource id); Subscription the subscription's name, "" for
	// calls made without one.
	API          string `json:"api"`
	Subscription string `json:"subscription,omitempty"`
	// Handshakes by result: Success answered 101; Blocked 401, 403 or 429 (key, policy or
	// limit refusals); Failed 5xx (the gateway or the backend failed); Other any other
	// answer, or none (the client went away).
	HandshakesSuccess int64 `json:"handshakesSuccess,omitempty"`
	HandshakesBlocked int64 `json:"handshakesBlocked,omitempty"`
	HandshakesFailed  int64 `json:"handshakesFailed,omitempty"`
	HandshakesOther   int64 `json:"handshakesOther,omitempty"`
	// Messages and bytes (payload) from the client (In) and from the backend (Out).
	MessagesIn  int64 `json:"messagesIn,omitempty"`
	MessagesOut int64 `json:"messagesOut,omitempty"`
	BytesIn     int64 `json:"bytesIn,omitempty"`
	BytesOut    int64 `json:"bytesOut,omitempty"`
	// ConnectionMillis is the time sessions were open within the minute, summed over sessions,
	// in milliseconds.
	ConnectionMillis int64 `json:"connectionMs,omitempty"`
	// ConnectionsClosed counts the sessions that ended during the minute (those opened are
	// HandshakesSuccess).
	ConnectionsClosed int64 `json:"connectionsClosed,omitempty"`
	// Refusals counts the handshakes not answered 101 by outcome: OutcomeKey of the status
	// and the reason (docs/observability.md, handshake results). At most MaxUsageOutcomes.
	Refusals map[string]int64 `json:"refusals,omitempty"`
}

// OutcomeKey is the key of a handshake answered with status (0: no answer reached the
// client) for reason in UsageRecord.Refusals: "<status> <reason>", or "<status>" without one.
func OutcomeKey(status int, reason string) string {
	if reason == "" {
		return strconv.Itoa(status)
	}
	return strconv.Itoa(status) + " " + reason
}

// Bounds of a UsageBatch, so that a batch fits a NATS message and a receiver stores a bounded
// amount per batch.
const (
	MaxUsageRecords  = 2000
	MaxUsageOutcomes = 64
	maxUsageIDBytes  = 256
	maxUsageKeyBytes = 256
)

// Validate reports whether b is a batch a receiver should store: ids present and within
// bounds, at most MaxUsageRecords records, each on a whole minute, with an API, and with no
// negative count.
func (b *UsageBatch) Validate() error {
	for _, f := range []struct{ name, value string }{{"nodeId", b.NodeID}, {"batchId", b.BatchID}, {"serviceId", b.ServiceID}, {"gateway", b.Gateway}} {
		switch {
		case f.value == "":
			return fmt.Errorf("usage batch: %s is empty", f.name)
		case len(f.value) > maxUsageIDBytes || !utf8.ValidString(f.value):
			return fmt.Errorf("usage batch: %s is not valid UTF-8 of at most %d bytes", f.name, maxUsageIDBytes)
		}
	}
	if len(b.Records) > MaxUsageRecords {
		return fmt.Errorf("usage batch: %d records, more than %d", len(b.Records), MaxUsageRecords)
	}
	for i := range b.Records {
		r := &b.Records[i]
		if r.Minute.IsZero() || !r.Minute.Equal(r.Minute.Truncate(time.Minute)) {
			return fmt.Errorf("usage batch: record %d: minute %s is not a whole minute", i, r.Minute)
		}
		if r.API == "" || len(r.API) > maxUsageKeyBytes || len(r.Subscription) > maxUsageKeyBytes ||
			!utf8.ValidString(r.API) || !utf8.ValidString(r.Subscription) {
			return fmt.Errorf("usage batch: record %d: api or subscription empty, too long or not UTF-8", i)
		}
		if min(r.HandshakesSuccess, r.HandshakesBlocked, r.HandshakesFailed, r.HandshakesOther,
			r.MessagesIn, r.MessagesOut, r.BytesIn, r.BytesOut, r.ConnectionMillis, r.ConnectionsClosed) < 0 {
			return fmt.Errorf("usage batch: record %d has a negative count", i)
		}
		if err := validRefusals(r.Refusals); err != nil {
			return fmt.Errorf("usage batch: record %d: %w", i, err)
		}
	}
	return nil
}

// validRefusals checks a record's Refusals: at most MaxUsageOutcomes keys, each of bounded
// UTF-8, and no negative count.
func validRefusals(m map[string]int64) error {
	if len(m) > MaxUsageOutcomes {
		return fmt.Errorf("%d refusal outcomes, more than %d", len(m), MaxUsageOutcomes)
	}
	for k, v := range m {
		if k == "" || len(k) > maxUsageKeyBytes || !utf8.ValidString(k) || v < 0 {
			return fmt.Errorf("refusal outcome %.32q is empty, too long, not UTF-8 or negative", k)
		}
	}
	return nil
}
