package configsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/pipeline"
)

// stream writes a snapshot of n entities and n subscriptions, alternating, in format.
func stream(t *testing.T, format configwire.SnapshotFormat, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := configwire.NewSnapshotWriter(&buf, format, configwire.Snapshot{ServiceID: "svc-1", Revision: 4})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := w.WriteEntity(configwire.Entity{Kind: configwire.KindAPI, Name: fmt.Sprint("a", i)}); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteSubscription(configwire.Subscription{Name: fmt.Sprint("s", i), Scope: "apis", State: "active"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadSnapshot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		format configwire.SnapshotFormat
	}{{"stream", configwire.SnapshotStream}, {"JSON", configwire.SnapshotJSON}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := 3*itemBatch + 1 // several batches, the last one short
			var ents, subs, wantEnts, wantSubs []string
			for i := range n {
				wantEnts, wantSubs = append(wantEnts, fmt.Sprint("a", i)), append(wantSubs, fmt.Sprint("s", i))
			}
			snap, err := readSnapshot(bytes.NewReader(stream(t, tc.format, n)), configwire.SnapshotHandler{
				Entity: func(e configwire.Entity) error {
					ents = append(ents, e.Name)
					return nil
				},
				Subscription: func(s configwire.Subscription) error {
					subs = append(subs, s.Name)
					return nil
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if snap.ServiceID != "svc-1" || snap.Revision != 4 {
				t.Errorf("header = %+v", snap)
			}
			if diff := cmp.Diff(wantEnts, ents); diff != "" {
				t.Errorf("entities, in order (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantSubs, subs); diff != "" {
				t.Errorf("subscriptions, in order (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadSnapshotFails(t *testing.T) {
	t.Parallel()
	raw := stream(t, configwire.SnapshotStream, 10*itemBatch)
	errStop := errors.New("stop")
	added := 0
	count := func() error {
		if added++; added == itemBatch+3 {
			return errStop
		}
		return nil
	}
	_, err := readSnapshot(bytes.NewReader(raw), configwire.SnapshotHandler{
		Entity:       func(configwire.Entity) error { return count() },
		Subscription: func(configwire.Subscription) error { return count() },
	})
	if !errors.Is(err, errStop) {
		t.Errorf("err = %v, want the error of the handler", err)
	}
	if added != itemBatch+3 {
		t.Errorf("handler called %d times, want it not called after it failed", added)
	}

	// A snapshot cut short is an error, after the items before the cut.
	added = 0
	_, err = readSnapshot(bytes.NewReader(raw[:len(raw)/2]), configwire.SnapshotHandler{
		Entity:       func(configwire.Entity) error { added++; return nil },
		Subscription: func(configwire.Subscription) error { added++; return nil },
	})
	if err == nil || !strings.Contains(err.Error(), "ends before its end frame") {
		t.Errorf("err = %v for a cut stream", err)
	}
}

// TestCacheNeverGoesBack checks that a cache write of an earlier revision, finishing late on
// its goroutine, does not replace a later one, nor bring back the cache of a deleted service.
func TestCacheNeverGoesBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s := New(Options{CacheDir: dir, Log: slog.New(slog.DiscardHandler)}, compiled.NewBuilder(pipeline.Env{}))
	write := func(rev int64) {
		t.Helper()
		cw := s.newCacheWriter(ctx)
		fmt.Fprintf(cw, `{"revision":%d,"entities":[]}`, rev)
		tmp := cw.close(true)
		if tmp == "" {
			t.Fatalf("writing revision %d: %v", rev, cw.err)
		}
		s.commitCache(ctx, tmp, rev)
	}
	cached := func() string {
		raw, err := os.ReadFile(filepath.Join(dir, cacheName))
		if errors.Is(err, os.ErrNotExist) {
			return "none"
		}
		return string(raw)
	}
	write(5)
	write(7)
	write(6)
	if got := cached(); got != `{"revision":7,"entities":[]}` {
		t.Errorf("cache = %s, want revision 7", got)
	}
	s.removeCache(ctx, 8)
	write(7)
	if got := cached(); got != "none" {
		t.Errorf("cache = %s after the service was deleted at revision 8", got)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "config-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestLegacyCacheRemoved checks that the JSON cache file of an earlier version is removed, with
// a log line, and not read.
func TestLegacyCacheRemoved(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	legacy := filepath.Join(dir, "config.json")
	if err := os.WriteFile(legacy, []byte(`{"revision":3,"entities":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s := New(Options{CacheDir: dir, Log: slog.New(slog.NewTextHandler(&logs, nil)), Install: func(*compiled.Config) {
		t.Error("a configuration was installed from the legacy cache")
	}}, compiled.NewBuilder(pipeline.Env{}))
	s.dropLegacyCache(t.Context())
	if _, err := os.Stat(legacy); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the legacy cache is still there: %v", err)
	}
	if !strings.Contains(logs.String(), "removed the configuration cache of an earlier version") {
		t.Errorf("log = %q, want a line about the removed cache", logs.String())
	}
	if s.loadCache(t.Context()) {
		t.Error("loadCache found a cache")
	}
}
