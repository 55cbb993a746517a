package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"gatehouse.dev/management/internal/dbtest"
	"gatehouse.dev/management/internal/store/migrate"
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
			for _, want := range []string{"Usage: management [flags] [migrate | rotate-signing-key]", "rotate-signing-key  retire", "-database-url", "(DATABASE_URL)", "-nats-url", "-log-level"} {
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

// TestRotateSigningKey: "management rotate-signing-key" retires the active signing key, makes a
// new one active, and says which; with another MANAGEMENT_ENCRYPTION_KEY it fails and changes
// nothing.
func TestRotateSigningKey(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	url, drop, err := dbtest.Setup(ctx, "gh_rotate_cmd", migrate.Migrate)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	active := func() (id string, keys int) {
		t.Helper()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if err := conn.QueryRow(ctx, `SELECT (SELECT id FROM signing_keys WHERE retired_at IS NULL), count(*) FROM signing_keys`).Scan(&id, &keys); err != nil {
			t.Fatal(err)
		}
		return id, keys
	}
	rotate := func(encryptionKey string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, []string{"-database-url", url, "-encryption-key", encryptionKey, "rotate-signing-key"}, &out)
		var line struct {
			Msg   string `json:"msg"`
			KeyID string `json:"key_id"`
		}
		for l := range strings.Lines(out.String()) {
			if json.Unmarshal([]byte(l), &line) == nil && line.Msg == "configuration signing key rotated" {
				return line.KeyID, err
			}
		}
		return "", err
	}

	// The first run finds no key, creates the installation's first and rotates it.
	first, err := rotate("operator key")
	if err != nil {
		t.Fatalf("rotate-signing-key: %v", err)
	}
	if id, n := active(); id != first || n != 2 {
		t.Fatalf("after a rotation the active key is %s of %d, want %s of 2", id, n, first)
	}
	second, err := rotate("operator key")
	if err != nil {
		t.Fatalf("rotate-signing-key again: %v", err)
	}
	if id, n := active(); id != second || second == first || n != 3 {
		t.Fatalf("after a second rotation the active key is %s of %d, want a new key %s of 3", id, n, second)
	}
	if _, err := rotate("another key"); err == nil {
		t.Error("rotate-signing-key with another MANAGEMENT_ENCRYPTION_KEY: no error")
	}
	if id, n := active(); id != second || n != 3 {
		t.Errorf("a failed rotation changed the keys: active %s of %d", id, n)
	}
}
