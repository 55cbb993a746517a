package configwire

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Subscription is a subscription as gateways need it, the compact form in which a snapshot
// stream carries subscriptions: at a million subscriptions their entities are nearly all of a
// snapshot, and mostly properties no gateway reads. Changes still carry subscriptions as
// entities; SubscriptionOf reduces one.
type Subscription struct {
	Name string
	// Scope is "apis", "apis/{apiId}" or "products/{productId}", lower-cased (RelativeScope).
	Scope   string
	State   string
	OwnerID string
	// StartDate is when the subscription became active, or else when it was created (quota
	// periods count from it), to the second; zero when unknown.
	StartDate time.Time
	// KeyHashes are the SHA-256 hashes of its keys (KeyHash, undecoded).
	KeyHashes [][sha256.Size]byte
}

// subscriptionProperties are the ARM properties of a subscription that gateways read.
type subscriptionProperties struct {
	Scope       string `json:"scope"`
	State       string `json:"state"`
	OwnerID     string `json:"ownerId,omitempty"`
	StartDate   string `json:"startDate,omitempty"`
	CreatedDate string `json:"createdDate,omitempty"`
}

// SubscriptionOf reduces a subscription entity to its compact form. Key hashes that are not
// KeyHash values are left out: no key can match them.
func SubscriptionOf(e Entity) (Subscription, error) {
	if e.Name == "" {
		return Subscription{}, errors.New("a subscription without a name")
	}
	var p subscriptionProperties
	if err := json.Unmarshal(e.Properties, &p); err != nil {
		return Subscription{}, fmt.Errorf("subscription %s: %w", e.Name, err)
	}
	s := Subscription{Name: e.Name, Scope: RelativeScope(p.Scope), State: p.State, OwnerID: p.OwnerID,
		StartDate: StartDate(p.StartDate, p.CreatedDate)}
	for _, h := range e.KeyHashes {
		if b, ok := ParseKeyHash(h); ok {
			s.KeyHashes = append(s.KeyHashes, b)
		}
	}
	return s, nil
}

// Entity is s as a subscription entity, with the properties SubscriptionOf reads: the form of
// subscriptions in a JSON snapshot.
func (s Subscription) Entity() Entity {
	p := subscriptionProperties{Scope: "/" + s.Scope, State: s.State, OwnerID: s.OwnerID}
	if !s.StartDate.IsZero() {
		p.StartDate = s.StartDate.UTC().Format(time.RFC3339)
	}
	props, _ := json.Marshal(p) // strings only: cannot fail
	e := Entity{Kind: KindSubscription, Name: s.Name, Properties: props}
	for _, h := range s.KeyHashes {
		e.KeyHashes = append(e.KeyHashes, hex.EncodeToString(h[:]))
	}
	return e
}

// RelativeScope turns a subscription scope, a full ARM id or already relative, into "apis",
// "apis/{apiId}" or "products/{productId}", lower-cased.
func RelativeScope(scope string) string {
	const service = "/providers/microsoft.apimanagement/service/"
	s := strings.ToLower(scope)
	if i := strings.Index(s, service); i >= 0 {
		rest := s[i+len(service):]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			return rest[j+1:]
		}
	}
	return strings.TrimPrefix(s, "/")
}

// StartDate is the first of the RFC 3339 dates that parses, truncated to the second, or zero:
// a subscription's startDate, else its createdDate.
func StartDate(dates ...string) time.Time {
	for _, d := range dates {
		if t, err := time.Parse(time.RFC3339, d); err == nil {
			return t.UTC().Truncate(time.Second)
		}
	}
	return time.Time{}
}

// ParseKeyHash decodes a KeyHash.
func ParseKeyHash(h string) ([sha256.Size]byte, bool) {
	var out [sha256.Size]byte
	if len(h) != hex.EncodedLen(sha256.Size) {
		return out, false
	}
	_, err := hex.Decode(out[:], []byte(h))
	return out, err == nil
}
