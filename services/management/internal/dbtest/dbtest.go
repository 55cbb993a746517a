// Package dbtest gives each test package its own Postgres database, created fresh on the server
// named by DATABASE_URL, migrated, and dropped when the package's tests are done.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is the server used when DATABASE_URL is unset: the trust-auth Postgres that a
// developer machine or CI runs on the standard port.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// dropTimeout bounds how long drop waits for the server; drop runs after the caller's context
// may already be done.
const dropTimeout = time.Minute

// maxPrefix keeps the database name within Postgres' 63-byte identifier limit once "_" and 16
// hex digits are appended.
const maxPrefix = 63 - 1 - 16

// Setup creates a database named "<prefix>_<16 random hex digits>" on the server named by
// DATABASE_URL (DefaultURL when unset), calls migrate with the new database's URL, and returns
// that URL and a drop func. The prefix is lowercased and every byte outside [a-z0-9_] becomes
// "_"; an empty prefix becomes "test".
//
// drop terminates every connection to the database and drops it; it is safe to call more than
// once, from any goroutine, and reports a failure on stderr rather than failing the tests, since a leftover database
// does not make a test wrong. If migrate fails, the database is dropped and the error returned.
//
// The server role must be allowed to create databases. Setup is meant for TestMain:
//
//	url, drop, err := dbtest.Setup(ctx, "store", migrate)
//	if err != nil { fmt.Fprintln(os.Stderr, err); os.Exit(1) }
//	code := m.Run()
//	drop()
//	os.Exit(code)
func Setup(ctx context.Context, prefix string, migrate func(ctx context.Context, url string) error) (string, func(), error) {
	adminURL := os.Getenv("DATABASE_URL")
	if adminURL == "" {
		adminURL = DefaultURL
	}
	name, err := databaseName(prefix)
	if err != nil {
		return "", nil, err
	}
	dbURL, err := withDatabase(adminURL, name)
	if err != nil {
		return "", nil, err
	}

	if err := execAdmin(ctx, adminURL, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("dbtest: create database %s: %w", name, err)
	}

	var (
		mu      sync.Mutex
		dropped bool
	)
	drop := func() {
		mu.Lock()
		defer mu.Unlock()
		if dropped {
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dropTimeout)
		defer cancel()
		// WITH (FORCE) terminates the remaining sessions first (Postgres 13+).
		err := execAdmin(dctx, adminURL, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		if err != nil {
			fmt.Fprintf(os.Stderr, "dbtest: drop database %s: %v\n", name, err)
			return
		}
		dropped = true
	}

	if migrate != nil {
		if err := migrate(ctx, dbURL); err != nil {
			drop()
			return "", nil, fmt.Errorf("dbtest: migrate database %s: %w", name, err)
		}
	}
	return dbURL, drop, nil
}

// databaseName returns the sanitised prefix followed by "_" and 16 random hex digits.
func databaseName(prefix string) (string, error) {
	var b strings.Builder
	for _, r := range strings.ToLower(prefix) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	p := b.String()
	if p == "" {
		p = "test"
	}
	if len(p) > maxPrefix {
		p = p[:maxPrefix]
	}
	var suffix [8]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return "", fmt.Errorf("dbtest: random name: %w", err)
	}
	return p + "_" + hex.EncodeToString(suffix[:]), nil
}

// withDatabase returns adminURL pointing at database name instead. It accepts both URL
// (postgres://…) and keyword/value (host=… dbname=…) connection strings; in the latter a later
// keyword overrides an earlier one.
func withDatabase(adminURL, name string) (string, error) {
	if !strings.HasPrefix(adminURL, "postgres://") && !strings.HasPrefix(adminURL, "postgresql://") {
		return adminURL + " dbname=" + name, nil
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		// The error text may hold the password; say only which variable is wrong.
		return "", errors.New("dbtest: DATABASE_URL is not a valid URL")
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}

// execAdmin runs one statement on a short-lived connection to the admin database.
func execAdmin(ctx context.Context, adminURL, sql string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}
