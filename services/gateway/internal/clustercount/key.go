// Package clustercount shares rate-limit and quota counters and concurrent-connection counts
// across a gateway fleet through NATS JetStream key-value buckets, and counts locally
// whenever NATS cannot answer in time.
package clustercount

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// token maps a counter key, which may hold any byte, to a KV key and subject token: the
// unpadded base64url form of the first 128 bits of its SHA-256, so that distinct keys collide
// with negligible probability.
func token(key string) string {
	sum := sha256.Sum256([]byte(key))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// nodeToken makes a node id usable as one KV key and subject token: characters other than
// letters, digits, '-' and '_' become '_'.
func nodeToken(id string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, id)
}

// isConflict reports whether err is JetStream's answer to a compare-and-set that lost a race
// (wrong last sequence; code 10071, or 10164 on replicated streams).
func isConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
