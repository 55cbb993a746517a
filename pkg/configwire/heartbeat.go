package configwire

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Heartbeat is what a gateway node reports about itself, on bus.HeartbeatSubject, every few
// seconds and at once after it installs a new configuration. It carries no secrets: LastError
// is a message the node would also log.
type Heartbeat struct {
	// NodeID identifies the node process: a random UUID chosen at start, so a restarted node is
	// a new node.
	NodeID string `json:"nodeId"`
	// ServiceID is the internal id of the node's service and Gateway the name of its gateway
	// resource, both as in the node's configuration snapshot.
	ServiceID string `json:"serviceId"`
	Gateway   string `json:"gateway"`
	// Revision is the configuration revision the node serves.
	Revision int64 `json:"revision"`
	// Connections is the number of WebSocket sessions open on the node.
	Connections int `json:"connections"`
	// Healthy is false while the node's last attempt to fetch or compile its configuration
	// failed; LastError then says why (at most MaxHeartbeatErrorBytes).
	Healthy   bool   `json:"healthy"`
	LastError string `json:"lastError,omitempty"`
	// Started is when the node process started; Sent when it sent this heartbeat.
	Started time.Time `json:"started"`
	Sent    time.Time `json:"sent"`
	// Interval is how often the node sends heartbeats when nothing changes, so that management
	// can tell a silent node from a slow one.
	Interval time.Duration `json:"intervalNs,omitempty"`
	Version  string        `json:"version,omitempty"`
	Hostname string        `json:"hostname,omitempty"`
	// Stopping is set on the last heartbeat of a node that shuts down: management forgets the
	// node at once instead of waiting for it to go stale.
	Stopping bool `json:"stopping,omitempty"`
}

// Bounds of a Heartbeat's fields, so that a receiver keeps a bounded amount per node.
const (
	MaxHeartbeatErrorBytes = 1024
	maxHeartbeatIDBytes    = 256
)

// Validate reports whether h is a heartbeat a receiver should keep: a node id, service id and
// gateway, no negative counts, and strings within their bounds.
func (h *Heartbeat) Validate() error {
	for _, f := range []struct {
		name, value string
		required    bool
		max         int
	}{
		{"nodeId", h.NodeID, true, maxHeartbeatIDBytes},
		{"serviceId", h.ServiceID, true, maxHeartbeatIDBytes},
		{"gateway", h.Gateway, true, maxHeartbeatIDBytes},
		{"version", h.Version, false, maxHeartbeatIDBytes},
		{"hostname", h.Hostname, false, maxHeartbeatIDBytes},
		{"lastError", h.LastError, false, MaxHeartbeatErrorBytes},
	} {
		switch {
		case f.required && f.value == "":
			return fmt.Errorf("heartbeat: %s is empty", f.name)
		case len(f.value) > f.max:
			return fmt.Errorf("heartbeat: %s is longer than %d bytes", f.name, f.max)
		case !utf8.ValidString(f.value):
			return fmt.Errorf("heartbeat: %s is not valid UTF-8", f.name)
		}
	}
	if h.Revision < 0 || h.Connections < 0 || h.Interval < 0 {
		return errors.New("heartbeat: negative revision, connections or interval")
	}
	return nil
}
