package bus

import (
	"crypto/sha256"
	"encoding/hex"
)

// The JetStream key-value buckets of the fleet's counters (services/gateway/internal/clustercount),
// which gateway nodes create when they are missing: rate-limit windows (memory storage), quota
// periods (file storage, so they survive restarts) and each node's count of concurrent
// connections per counter (memory storage). Every key in them starts with its service's
// ServiceToken, so that the bus confines a node to its own service's keys (issue 12).
const (
	RatesBucket       = "gatehouse_rates"
	QuotasBucket      = "gatehouse_quotas"
	ConnectionsBucket = "gatehouse_connections"
)

// ServiceToken is the first token of the KV keys and eviction subjects of the fleet counters of
// service serviceID (its internal id): "s" and the hex of the first 128 bits of the id's
// SHA-256. It is a valid KV key token and subject token whatever the id holds, and of fixed
// length, so one service's keys never fall under another's filter.
func ServiceToken(serviceID string) string {
	sum := sha256.Sum256([]byte(serviceID))
	return "s" + hex.EncodeToString(sum[:16])
}

// CounterKey is the KV key of a counter of service serviceID in a counter bucket:
// "<service token>.<key>", key being one or more KV key tokens.
func CounterKey(serviceID, key string) string { return ServiceToken(serviceID) + "." + key }

// CounterKeys is the KV key filter of every counter of service serviceID in a counter bucket:
// "<service token>.>".
func CounterKeys(serviceID string) string { return ServiceToken(serviceID) + ".>" }

// evictPrefix starts every eviction subject.
const evictPrefix = "gatehouse.evict."

// EvictSubject is the subject on core NATS on which a gateway node of service serviceID asks
// the other nodes of its service to close the oldest connection of a counter, named by its
// token (one subject token): "gatehouse.evict.<service token>.<counter>".
func EvictSubject(serviceID, counter string) string {
	return evictPrefix + ServiceToken(serviceID) + "." + counter
}

// EvictSubjects is the subject filter of every eviction request of service serviceID.
func EvictSubjects(serviceID string) string { return evictPrefix + ServiceToken(serviceID) + ".*" }
