package bus_test

import (
	"regexp"
	"strings"
	"testing"

	"gatehouse.dev/pkg/bus"
)

// TestServiceToken: a service's token is one valid KV key and subject token whatever the id
// holds, and distinct services, even ids that differ only in case or by a prefix, get tokens
// of which none is a prefix of another, so no service's keys fall under another's filter.
func TestServiceToken(t *testing.T) {
	t.Parallel()
	kvKeyToken := regexp.MustCompile(`^[-_=a-zA-Z0-9]+$`)
	ids := []string{"0b7c6f1e-2d7a-4c1e-9a57-1f0e6c1d2a3b", "0B7C6F1E-2D7A-4C1E-9A57-1F0E6C1D2A3B", "0b7c6f1e", "a.b>*", "", "ünï côdé"}
	seen := map[string]string{}
	for _, id := range ids {
		tok := bus.ServiceToken(id)
		if !kvKeyToken.MatchString(tok) {
			t.Errorf("ServiceToken(%q) = %q: not one KV key token", id, tok)
		}
		if tok != bus.ServiceToken(id) {
			t.Errorf("ServiceToken(%q) is not stable", id)
		}
		for other, otherTok := range seen {
			if strings.HasPrefix(tok, otherTok) || strings.HasPrefix(otherTok, tok) {
				t.Errorf("services %q and %q: tokens %q and %q", id, other, tok, otherTok)
			}
		}
		seen[id] = tok
	}
	id := ids[0]
	if got, want := bus.CounterKey(id, "abc"), bus.ServiceToken(id)+".abc"; got != want {
		t.Errorf("CounterKey = %q, want %q", got, want)
	}
	if got, want := bus.CounterKeys(id), bus.ServiceToken(id)+".>"; got != want {
		t.Errorf("CounterKeys = %q, want %q", got, want)
	}
	if got, want := bus.EvictSubject(id, "abc"), "gatehouse.evict."+bus.ServiceToken(id)+".abc"; got != want {
		t.Errorf("EvictSubject = %q, want %q", got, want)
	}
	if got, want := bus.EvictSubjects(id), "gatehouse.evict."+bus.ServiceToken(id)+".*"; got != want {
		t.Errorf("EvictSubjects = %q, want %q", got, want)
	}
}
