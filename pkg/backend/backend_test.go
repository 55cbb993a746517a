package backend

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"PT2S", 2 * time.Second, true},
		{"PT1M30S", 90 * time.Second, true},
		{"P1DT1H", 25 * time.Hour, true},
		{"PT0.5S", 500 * time.Millisecond, true},
		{"", 0, false},
		{"P", 0, false},
		{"PT", 0, false},
		{"P1M", 0, false}, // months have no fixed length
		{"P1Y", 0, false},
		{"30s", 0, false},
	} {
		got, err := ParseDuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestValidateDefaultsAndBreaker(t *testing.T) {
	t.Parallel()
	p, err := Decode([]byte(`{"url":"wss://b.example/x","protocol":"http","circuitBreaker":{"rules":[{"tripDuration":"PT2S",
		"acceptRetryAfter":true,"failureCondition":{"percentage":50,"interval":"PT10S","errorReasons":["Server errors"],
		"statusCodeRanges":[{"min":500,"max":503}]}}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(&p); err != nil {
		t.Fatal(err)
	}
	if p.Type != TypeSingle || !*p.TLS.ValidateCertificateChain || !*p.TLS.ValidateCertificateName {
		t.Errorf("defaults: type %q tls %+v", p.Type, p.TLS)
	}
	b, err := p.CircuitBreaker.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if b.Percentage != 50 || b.Interval != 10*time.Second || b.TripDuration != 2*time.Second || !b.Errors || !b.AcceptRetryAfter {
		t.Errorf("breaker %+v", b)
	}
	for status, want := range map[int]bool{499: false, 500: true, 503: true, 504: false} {
		if b.FailedStatus(status) != want {
			t.Errorf("FailedStatus(%d) = %v", status, !want)
		}
	}
	if _, err := Decode([]byte(`{"url":"x","colour":"blue"}`)); err == nil {
		t.Error("an unknown property decoded")
	}
}
