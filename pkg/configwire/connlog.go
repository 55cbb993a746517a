package configwire

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unicode/utf8"
)

// ConnectionLogBatch is what a gateway node publishes on bus.ConnectionLogSubject about
// once a second: the records of the WebSocket sessions that ended since its last batch,
// authenticated with the node's NodeKey like a heartbeat. A batch may be received twice
// (a management replica that restarts); records are keyed by correlation id.
type ConnectionLogBatch struct {
	// NodeID identifies the node process (the heartbeat's node id); ServiceID and Gateway
	// are the node's service (internal id) and gateway resource, as its subject names them.
	NodeID    string `json:"nodeId"`
	ServiceID string `json:"serviceId"`
	Gateway   string `json:"gateway"`
	// Records hold at most MaxConnectionLogRecords sessions.
	Records []ConnectionLogRecord `json:"records"`
}

// ConnectionLogRecord is one ended WebSocket session, as the node's "websocket closed" log
// record tells it (docs/observability.md). It holds no key, token, header or query.
type ConnectionLogRecord struct {
	// CorrelationID is the X-Correlation-ID of the session's 101.
	CorrelationID string `json:"correlationId"`
	API           string `json:"api"`
	Operation     string `json:"operation,omitempty"`
	Product       string `json:"product,omitempty"`
	Subscription  string `json:"subscription,omitempty"`
	User          string `json:"user,omitempty"`
	// ClientIP is the client's address, without port, "" when unknown.
	ClientIP string `json:"clientIp,omitempty"`
	// Opened is when the 101 was sent; Closed when the relay ended.
	Opened time.Time `json:"opened"`
	Closed time.Time `json:"closed"`
	// Messages and payload bytes from the client (In) and from the backend (Out).
	MessagesIn  int64 `json:"messagesIn"`
	MessagesOut int64 `json:"messagesOut"`
	BytesIn     int64 `json:"bytesIn"`
	BytesOut    int64 `json:"bytesOut"`
	// CloseCode is the first close code (1006 when the connection ended without one),
	// ClosedBy "client", "backend" or "gateway", Reason the close reason of the metrics
	// (normal, backend, revoked, expired, idle, drain, limit, error) and Detail the
	// gateway's own words when it closed the session or a connection broke.
	CloseCode int    `json:"closeCode"`
	ClosedBy  string `json:"closedBy"`
	Reason    string `json:"reason"`
	Detail    string `json:"detail,omitempty"`
}

// Bounds of a ConnectionLogBatch, so that a batch fits a NATS message and a receiver stores
// a bounded amount per batch.
const (
	MaxConnectionLogRecords = 500
	maxConnLogFieldBytes    = 256
	maxConnLogDetailBytes   = 512
)

// Validate reports whether b is a batch a receiver should store: ids present and within
// bounds, at most MaxConnectionLogRecords records, each with a correlation id, an API, a
// close no earlier than its opening, a close code of 1000–4999 and no negative count.
func (b *ConnectionLogBatch) Validate() error {
	for _, f := range []struct{ name, value string }{{"nodeId", b.NodeID}, {"serviceId", b.ServiceID}, {"gateway", b.Gateway}} {
		if f.value == "" || len(f.value) > maxConnLogFieldBytes || !utf8.ValidString(f.value) {
			return fmt.Errorf("connection log: %s is empty, longer than %d bytes or not UTF-8", f.name, maxConnLogFieldBytes)
		}
	}
	if len(b.Records) > MaxConnectionLogRecords {
		return fmt.Errorf("connection log: %d records, more than %d", len(b.Records), MaxConnectionLogRecords)
	}
	for i := range b.Records {
		if err := b.Records[i].validate(); err != nil {
			return fmt.Errorf("connection log: record %d: %w", i, err)
		}
	}
	return nil
}

// Clamp cuts r's strings to the bounds Validate checks, without splitting a UTF-8 sequence.
func (r *ConnectionLogRecord) Clamp() {
	for _, s := range []*string{&r.CorrelationID, &r.API, &r.Operation, &r.Product, &r.Subscription, &r.User, &r.ClosedBy, &r.Reason} {
		*s = truncateUTF8(*s, maxConnLogFieldBytes)
	}
	r.Detail = truncateUTF8(r.Detail, maxConnLogDetailBytes)
}

// truncateUTF8 cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func (r *ConnectionLogRecord) validate() error {
	if r.CorrelationID == "" || r.API == "" {
		return errors.New("no correlation id or api")
	}
	for _, v := range []string{r.CorrelationID, r.API, r.Operation, r.Product, r.Subscription, r.User, r.ClosedBy, r.Reason} {
		if len(v) > maxConnLogFieldBytes || !utf8.ValidString(v) {
			return fmt.Errorf("a field is longer than %d bytes or not UTF-8", maxConnLogFieldBytes)
		}
	}
	if len(r.Detail) > maxConnLogDetailBytes || !utf8.ValidString(r.Detail) {
		return fmt.Errorf("detail is longer than %d bytes or not UTF-8", maxConnLogDetailBytes)
	}
	if r.ClientIP != "" {
		if _, err := netip.ParseAddr(r.ClientIP); err != nil {
			return errors.New("clientIp is not an IP address")
		}
	}
	if r.Opened.IsZero() || r.Closed.Before(r.Opened) {
		return errors.New("no opening time, or closed before it opened")
	}
	if r.CloseCode < 1000 || r.CloseCode > 4999 {
		return fmt.Errorf("close code %d is not a WebSocket close code", r.CloseCode)
	}
	if min(r.MessagesIn, r.MessagesOut, r.BytesIn, r.BytesOut) < 0 {
		return errors.New("a negative count")
	}
	return nil
}
