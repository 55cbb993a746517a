package bus_test

import (
	"strings"
	"testing"

	"gatehouse.dev/pkg/bus"
)

func TestHeartbeatSubject(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, service, gateway, want string
	}{
		{"plain", "0b7c6f1e-2d7a-4c1e-9a57-1f0e6c1d2a3b", "edge", "gatehouse.heartbeat.0b7c6f1e-2d7a-4c1e-9a57-1f0e6c1d2a3b.edge"},
		{"dots and wildcards", "svc", "eu.west*>", "gatehouse.heartbeat.svc.eu~2Ewest~2A~3E"},
		{"white space", "svc", "edge one\t", "gatehouse.heartbeat.svc.edge~20one~09"},
		{"the escape character itself", "svc", "a~2E", "gatehouse.heartbeat.svc.a~7E2E"},
		{"non-ASCII", "svc", "zürich", "gatehouse.heartbeat.svc.z~C3~BCrich"},
		{"empty", "", "", "gatehouse.heartbeat.~.~"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := bus.HeartbeatSubject(tc.service, tc.gateway)
			if got != tc.want {
				t.Errorf("HeartbeatSubject(%q, %q) = %q, want %q", tc.service, tc.gateway, got, tc.want)
			}
			// Four tokens, none empty, none with a character NATS reserves.
			tokens := strings.Split(got, ".")
			if len(tokens) != 4 {
				t.Fatalf("%q has %d tokens, want 4", got, len(tokens))
			}
			for _, tok := range tokens {
				if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
					t.Errorf("%q: token %q is not a valid NATS token", got, tok)
				}
			}
		})
	}
}

func TestSubjectTokenDistinct(t *testing.T) {
	t.Parallel()
	inputs := []string{"a.b", "a~2Eb", "a_b", "a-b", "A.B", "a b", "ab", "", "~"}
	seen := map[string]string{}
	for _, in := range inputs {
		tok := bus.SubjectToken(in)
		if prev, dup := seen[tok]; dup {
			t.Errorf("SubjectToken(%q) = SubjectToken(%q) = %q", in, prev, tok)
		}
		seen[tok] = in
	}
}
