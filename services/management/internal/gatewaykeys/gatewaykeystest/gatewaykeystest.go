// Package gatewaykeystest gives tests a stand-in for gatewaykeys.Cache, for the packages that
// check node authentications (fleet, reports): node keys derived from a fixed root, a checker
// of authentications made with them, and a recorder of the messages a receiver drops.
package gatewaykeystest

import (
	"slices"
	"sync"

	"gatehouse.dev/pkg/configwire"
)

// KeyID is the signing key id of the node keys NodeKey derives.
const KeyID = "ktest"

// NodeKey is the node key of gateway in the service serviceID: what management would hand the
// gateway's nodes.
func NodeKey(serviceID, gateway string) configwire.NodeKey {
	return configwire.DeriveNodeKey(KeyID, []byte("test root"), serviceID, gateway, []byte("gateway key"))
}

// Auth checks node authentications against NodeKey, as gatewaykeys.Cache does against
// management's signing keys and the gateways' current keys.
type Auth struct{}

// Verify implements fleet.NodeAuth and reports.NodeAuth.
func (Auth) Verify(subject string, data []byte, auth, serviceID, gateway string) error {
	if auth == "" {
		return configwire.ErrUnsigned
	}
	return NodeKey(serviceID, gateway).Verify(subject, data, auth)
}

// Rejections records the messages a receiver dropped, as "<kind> <reason>" (the Rejected
// options of fleet and reports). It is safe for concurrent use.
type Rejections struct {
	mu  sync.Mutex
	got []string
}

// Add records a dropped message.
func (r *Rejections) Add(kind, reason string) {
	r.mu.Lock()
	r.got = append(r.got, kind+" "+reason)
	r.mu.Unlock()
}

// List returns what was recorded, oldest first.
func (r *Rejections) List() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}
