package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestCommand checks the exit codes and what an operator reads for a command line that
// cannot run a node.
func TestCommand(t *testing.T) {
	t.Setenv("GATEWAY_TOKEN", "")
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  []string // what the output holds
	}{
		{"help", []string{"-h"}, 0, []string{"Usage of gateway", "-drain-timeout", "(GATEWAY_DRAIN_TIMEOUT)"}},
		{"long help", []string{"-help"}, 0, []string{"Usage of gateway"}},
		{"unknown flag", []string{"-bogus"}, 2, []string{"flag provided but not defined: -bogus", "Usage of gateway"}},
		{"malformed flag", []string{"-drain-timeout", "soon"}, 2, []string{"invalid value", "Usage of gateway"}},
		{"no token", nil, 1, []string{"gateway: GATEWAY_TOKEN is required: generate one with POST .../gateways/{id}/generateToken"}},
		{"bad public URL", []string{"-token", "t", "-public-url", "https://gw.example.com"}, 1, []string{"GATEWAY_PUBLIC_URL", "scheme must be ws or wss"}},
		{"bad log level", []string{"-token", "t", "-log-level", "loud"}, 1, []string{"gateway: LOG_LEVEL:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if code := command(t.Context(), tc.args, &out); code != tc.code {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tc.code, out.String())
			}
			for _, want := range tc.out {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output does not hold %q:\n%s", want, out.String())
				}
			}
		})
	}
}

// TestMalformedVariable checks that a malformed variable fails the command rather than
// falling back to the flag's default.
func TestMalformedVariable(t *testing.T) {
	t.Setenv("GATEWAY_DRAIN_TIMEOUT", "soon")
	var out bytes.Buffer
	if code := command(t.Context(), []string{"-token", "t"}, &out); code != 1 || !strings.Contains(out.String(), "GATEWAY_DRAIN_TIMEOUT") {
		t.Errorf("exit code %d, output %q; want 1 and a message naming GATEWAY_DRAIN_TIMEOUT", code, out.String())
	}
}
