package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		t.Run(arg, func(t *testing.T) {
			var out bytes.Buffer
			if _, _, err := parseConfig([]string{arg}, &out); !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("parseConfig(%s): %v, want flag.ErrHelp", arg, err)
			}
			out.Reset()
			// run answers help without error, so main exits 0.
			if err := run(context.Background(), []string{arg}, &out); err != nil {
				t.Fatalf("run(%s): %v, want nil (exit 0)", arg, err)
			}
			for _, want := range []string{"Usage: management [flags] [migrate]", "-database-url", "(DATABASE_URL)", "-nats-url", "-log-level"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("usage lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	var out bytes.Buffer
	c, rest, err := parseConfig([]string{"-admin-token", "tok", "-jwt-issuer", "iss", "-nats-url", "nats://a:4222,nats://b:4222",
		"-listen", "127.0.0.1:9", "-nats-stream-replicas", "3", "-log-level", "debug", "migrate"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	got := []any{c.app.Auth.AdminToken, c.app.Auth.Issuer, c.app.NATSURL, c.app.Listen, c.app.StreamReplicas, c.logLevel, rest}
	want := []any{"tok", "iss", "nats://a:4222,nats://b:4222", "127.0.0.1:9", 3, "debug", []string{"migrate"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if _, _, err := parseConfig([]string{"-tls-cert", "c.pem"}, &out); err == nil {
		t.Error("-tls-cert without -tls-key: no error")
	}
	if err := run(context.Background(), []string{"-log-level", "debug", "serve"}, &out); err == nil || !strings.Contains(err.Error(), `unknown command "serve"`) {
		t.Errorf("run with an unknown command: %v", err)
	}
}
