package pipeline

import (
	"sync"
	"time"

	"gatehouse.dev/pkg/pipeline/expr"
)

// Bounds of a validate-jwt step's verified tokens.
const (
	maxVerifiedTokens = 256
	verifiedTokenTTL  = 10 * time.Minute
)

// verifiedTokens remembers the tokens a validate-jwt step with only inline keys has decoded
// and whose signature it has verified, keyed by the exact token text: a client that presents
// the same token again (reconnecting) skips the decoding and the signature check, which
// depend on nothing but the text and the step's fixed keys. Lifetime, audience, issuer and
// claims are still checked on every use. Steps with openid-config keys keep no cache, so a
// key withdrawn from the identity provider stops verifying at once.
type verifiedTokens struct {
	mu      sync.Mutex
	entries map[string]verifiedToken
}

type verifiedToken struct {
	tok   *expr.Jwt
	until time.Time // the token's exp, at most verifiedTokenTTL after it was verified
}

// get returns the verified token raw, if it is remembered and not past its time at now.
func (v *verifiedTokens) get(raw string, now time.Time) *expr.Jwt {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.entries[raw]
	if !ok {
		return nil
	}
	if now.After(e.until) {
		delete(v.entries, raw)
		return nil
	}
	return e.tok
}

// put remembers tok, just verified at now, until its exp or verifiedTokenTTL. When full it
// drops the expired entries, or else any one.
func (v *verifiedTokens) put(tok *expr.Jwt, now time.Time) {
	until := now.Add(verifiedTokenTTL)
	if exp, ok := tok.TimeClaim("exp"); ok && exp.Before(until) {
		until = exp
	}
	if !until.After(now) {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.entries == nil {
		v.entries = make(map[string]verifiedToken)
	}
	if len(v.entries) >= maxVerifiedTokens {
		for raw, e := range v.entries {
			if now.After(e.until) {
				delete(v.entries, raw)
			}
		}
		for raw := range v.entries {
			if len(v.entries) < maxVerifiedTokens {
				break
			}
			delete(v.entries, raw)
		}
	}
	v.entries[tok.Raw] = verifiedToken{tok: tok, until: until}
}
