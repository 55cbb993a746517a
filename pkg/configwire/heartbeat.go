package configwire

import (
	"errors"
	"fmt"
	"net/url"
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
	// Started is when the node process started; Sent when it sent this heartbeat, later than
	// every heartbeat the node sent before, so that management refuses a replayed one.
	Started time.Time `json:"started"`
	Sent    time.Time `json:"sent"`
	// Interval is how often the node sends heartbeats when nothing changes, so that management
	// can tell a silent node from a slow one.
	Interval time.Duration `json:"intervalNs,omitempty"`
	Version  string        `json:"version,omitempty"`
	Hostname string        `json:"hostname,omitempty"`
	// URL is where clients reach the node's traffic listener (GATEWAY_PUBLIC_URL): a ws:// or
	// wss:// URL that ValidNodeURL accepts, or empty. Management's test console connects there.
	URL string `json:"url,omitempty"`
	// PolicyFailures lists, at most MaxHeartbeatFailures of them, the policies the node could
	// not compile in the revision it serves: their APIs fail closed there (500) while the
	// rest of the revision is enforced. FailedAPIs counts every API with one, listed or not.
	PolicyFailures []PolicyFailure `json:"policyFailures,omitempty"`
	FailedAPIs     int             `json:"failedApis,omitempty"`
	// Stopping is set on the last heartbeat of a node that shuts down: management forgets the
	// node at once instead of waiting for it to go stale.
	Stopping bool `json:"stopping,omitempty"`
}

// PolicyFailure is one effective policy a node could not compile: the scope holding the
// document at fault, the element, where it stands in that document, and why. The error
// quotes no secret named value.
type PolicyFailure struct {
	API       string `json:"api"`
	Operation string `json:"operation,omitempty"`
	Product   string `json:"product,omitempty"`
	// Scope is "global", "product:{id}", "api:{id}" or "operation:{api}/{id}".
	Scope  string `json:"scope"`
	Policy string `json:"policy,omitempty"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
	Error  string `json:"error"`
}

// Bounds of a Heartbeat's fields, so that a receiver keeps a bounded amount per node.
const (
	MaxHeartbeatErrorBytes = 1024
	MaxHeartbeatFailures   = 50
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
		{"url", h.URL, false, maxNodeURLBytes},
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
	if len(h.PolicyFailures) > MaxHeartbeatFailures || h.FailedAPIs < 0 {
		return fmt.Errorf("heartbeat: more than %d policy failures, or a negative count", MaxHeartbeatFailures)
	}
	for _, f := range h.PolicyFailures {
		for _, v := range []string{f.API, f.Operation, f.Product, f.Scope, f.Policy} {
			if len(v) > maxHeartbeatIDBytes || !utf8.ValidString(v) {
				return errors.New("heartbeat: a policy failure's name is too long or not UTF-8")
			}
		}
		if len(f.Error) > MaxHeartbeatErrorBytes || !utf8.ValidString(f.Error) {
			return errors.New("heartbeat: a policy failure's error is too long or not UTF-8")
		}
	}
	if h.Revision < 0 || h.Connections < 0 || h.Interval < 0 {
		return errors.New("heartbeat: negative revision, connections or interval")
	}
	if h.URL != "" {
		if err := ValidNodeURL(h.URL); err != nil {
			return fmt.Errorf("heartbeat: %w", err)
		}
	}
	return nil
}

// maxNodeURLBytes bounds a node's URL.
const maxNodeURLBytes = 1024

// ValidNodeURL reports whether s can be a gateway node's public URL: absolute ws:// or wss://
// with a host, and no user information, query or fragment. A path is allowed, for a node behind
// a proxy that routes on a prefix; an API's path is appended to it.
func ValidNodeURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("node URL %q: %w", s, err)
	case u.Scheme != "ws" && u.Scheme != "wss":
		return fmt.Errorf("node URL %q: the scheme must be ws or wss", s)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("node URL %q has no host", s)
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "":
		return fmt.Errorf("node URL %q must not carry user information, a query or a fragment", s)
	case len(s) > maxNodeURLBytes:
		return fmt.Errorf("node URL is longer than %d bytes", maxNodeURLBytes)
	}
	return nil
}
