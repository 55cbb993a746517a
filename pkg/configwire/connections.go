package configwire

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Operations of a ConnectionsRequest.
const (
	// ConnectionsList asks each node for its open sessions that match the filter.
	ConnectionsList = "list"
	// ConnectionsClose asks each node to close its open sessions that match the filter.
	ConnectionsClose = "close"
)

// The close an administrator's request sends by default (RFC 6455 §7.4.1: policy violation).
const (
	AdminCloseCode   = 1008
	AdminCloseReason = "closed by an administrator"
)

// MaxListedConnections bounds the sessions one node lists in one reply, so that the reply
// fits a NATS message; a node with more matching sessions sets ConnectionsReply.Truncated.
const MaxListedConnections = 1000

// Bounds of a ConnectionsRequest.
const (
	maxFilterBytes      = 256
	maxCloseReasonBytes = 123 // what fits a close frame
)

// ConnectionFilter selects open sessions: every set field must match. API and Subscription
// are ARM names and compare case-insensitively; Node is a node id and ID a correlation id,
// both compared exactly.
type ConnectionFilter struct {
	ID           string `json:"id,omitempty"`
	API          string `json:"api,omitempty"`
	Subscription string `json:"subscription,omitempty"`
	Node         string `json:"node,omitempty"`
}

// ConnectionsRequest is what management sends on bus.ConnectionsSubject.
type ConnectionsRequest struct {
	Op     string           `json:"op"`
	Filter ConnectionFilter `json:"filter"`
	// Code and Reason are the close frame a close sends to both sides.
	Code   uint16 `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Validate reports whether r is a request a node should carry out: a known operation,
// filter values within bounds, and for a close a filter naming a session id or a
// subscription (never every session) and a close code an application may send.
func (r *ConnectionsRequest) Validate() error {
	for _, f := range []struct{ name, value string }{
		{"id", r.Filter.ID}, {"api", r.Filter.API}, {"subscription", r.Filter.Subscription}, {"node", r.Filter.Node},
	} {
		if len(f.value) > maxFilterBytes || !utf8.ValidString(f.value) {
			return fmt.Errorf("connections: filter %s is not valid UTF-8 of at most %d bytes", f.name, maxFilterBytes)
		}
	}
	switch r.Op {
	case ConnectionsList:
		return nil
	case ConnectionsClose:
	default:
		return fmt.Errorf("connections: unknown operation %q", r.Op)
	}
	switch {
	case r.Filter.ID == "" && r.Filter.Subscription == "":
		return errors.New("connections: a close names a connection id or a subscription")
	case r.Code != 1000 && r.Code != 1008 && (r.Code < 3000 || r.Code > 4999):
		return fmt.Errorf("connections: close code %d is not 1000, 1008 or 3000-4999", r.Code)
	case len(r.Reason) > maxCloseReasonBytes || !utf8.ValidString(r.Reason):
		return fmt.Errorf("connections: close reason is not valid UTF-8 of at most %d bytes", maxCloseReasonBytes)
	}
	return nil
}

// Connection describes one open WebSocket session. It never carries a key or token.
type Connection struct {
	// ID is the session's correlation id (the handshake's context.RequestId).
	ID           string `json:"id"`
	API          string `json:"api"`
	Subscription string `json:"subscription,omitempty"`
	Product      string `json:"product,omitempty"`
	ClientIP     string `json:"clientIp,omitempty"`
	// Since is when the session opened.
	Since time.Time `json:"since"`
	// Data messages and their payload bytes relayed so far (docs/design.md §3): In from the
	// client, Out to it.
	MessagesIn  int64 `json:"messagesIn"`
	MessagesOut int64 `json:"messagesOut"`
	BytesIn     int64 `json:"bytesIn"`
	BytesOut    int64 `json:"bytesOut"`
}

// ConnectionsReply is one node's answer to a ConnectionsRequest.
type ConnectionsReply struct {
	// Node is the answering node's id (as in its heartbeats) and Gateway its gateway resource.
	Node    string `json:"node"`
	Gateway string `json:"gateway,omitempty"`
	// Connections are the matching sessions, for a list (at most MaxListedConnections, and
	// Truncated set when more matched) or those a close closed.
	Connections []Connection `json:"connections,omitempty"`
	Truncated   bool         `json:"truncated,omitempty"`
	// Closed counts the sessions a close closed.
	Closed int `json:"closed,omitempty"`
	// Error says why the node refused the request; nothing was done then.
	Error string `json:"error,omitempty"`
}
