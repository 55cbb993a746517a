package diagnostic

import (
	"fmt"
	"testing"
)

func TestSampled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		percentage float64
		min, max   int // of 10,000 ids kept
	}{{0, 0, 0}, {100, 10000, 10000}, {50, 4700, 5300}, {1, 60, 140}} {
		kept := 0
		for i := range 10000 {
			if Sampled(fmt.Sprintf("id-%d", i), tc.percentage) {
				kept++
			}
		}
		if kept < tc.min || kept > tc.max {
			t.Errorf("percentage %v kept %d of 10000, want %d–%d", tc.percentage, kept, tc.min, tc.max)
		}
	}
	if Sampled("same", 37) != Sampled("same", 37) {
		t.Error("the decision is not the same twice")
	}
}

func TestOTLPOf(t *testing.T) {
	t.Parallel()
	o, err := OTLPOf(map[string]string{"endpoint": "https://c.example.com/base/", "headers": "Authorization=Bearer a=b, X-Tenant = t"})
	if err != nil {
		t.Fatal(err)
	}
	if o.URL != "https://c.example.com/base/v1/logs" || o.Header.Get("Authorization") != "Bearer a=b" || o.Header.Get("X-Tenant") != "t" {
		t.Errorf("OTLPOf = %+v", o)
	}
	for _, creds := range []map[string]string{
		{},
		{"endpoint": "c.example.com"},
		{"endpoint": "https://u:p@c.example.com"},
		{"endpoint": "https://c.example.com?x=1"},
		{"endpoint": "https://c.example.com", "headers": "bad header=x"},
		{"endpoint": "https://c.example.com", "headers": "X=a\r\nY: b"},
		{"endpoint": "https://c.example.com", "other": "x"},
	} {
		if _, err := OTLPOf(creds); err == nil {
			t.Errorf("OTLPOf(%v) accepted", creds)
		}
	}
}
