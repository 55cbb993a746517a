package configsync

import (
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
	"gatehouse.dev/gateway/internal/pipeline"
	"gatehouse.dev/pkg/configwire"
)

func TestDecodeSnapshot(t *testing.T) {
	t.Parallel()
	many := make([]string, 0, 3*entityBatch+1)
	for i := range cap(many) {
		many = append(many, fmt.Sprintf(`{"kind":"subscriptions","name":"s%d"}`, i))
	}
	tests := []struct {
		name    string
		doc     string
		want    configwire.Snapshot
		names   []string
		wantErr string
	}{
		{name: "header first",
			doc:   `{"serviceId":"svc-1","service":"svc","gateway":"gw","revision":7,"nats":{"stream":"S","subject":"x"},"entities":[{"kind":"apis","name":"a"},{"kind":"subscriptions","name":"b"}]}`,
			want:  configwire.Snapshot{ServiceID: "svc-1", Service: "svc", Gateway: "gw", Revision: 7, NATS: configwire.NATSInfo{Stream: "S", Subject: "x"}},
			names: []string{"a", "b"}},
		{name: "header last, keys in another case",
			doc:   `{"Entities":[{"kind":"apis","name":"a"}],"Revision":8,"serviceId":"svc-1"}`,
			want:  configwire.Snapshot{ServiceID: "svc-1", Revision: 8},
			names: []string{"a"}},
		{name: "no entities", doc: `{"revision":3,"entities":null}`, want: configwire.Snapshot{Revision: 3}},
		{name: "empty entities", doc: `{"revision":3,"entities":[]}`, want: configwire.Snapshot{Revision: 3}},
		{name: "several batches, in order",
			doc:  `{"revision":4,"entities":[` + strings.Join(many, ",") + `]}`,
			want: configwire.Snapshot{Revision: 4},
			names: func() []string {
				var n []string
				for i := range many {
					n = append(n, fmt.Sprintf("s%d", i))
				}
				return n
			}()},
		{name: "not an object", doc: `[1]`, wantErr: "not a JSON object"},
		{name: "entities not an array", doc: `{"entities":{}}`, wantErr: "not an array"},
		{name: "cut short", doc: `{"revision":3,"entities":[{"kind":"apis","name":"a"},{"kind":`, wantErr: "EOF"},
		{name: "bad entity", doc: `{"entities":[{"kind":1}]}`, wantErr: "cannot unmarshal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var names []string
			got, err := decodeSnapshot(strings.NewReader(tc.doc), func(e configwire.Entity) error {
				names = append(names, e.Name)
				return nil
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("snapshot (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.names, names); diff != "" {
				t.Errorf("entities added (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeSnapshotAddFails(t *testing.T) {
	t.Parallel()
	var doc strings.Builder
	doc.WriteString(`{"entities":[`)
	for i := range 10 * entityBatch {
		if i > 0 {
			doc.WriteString(",")
		}
		fmt.Fprintf(&doc, `{"kind":"subscriptions","name":"s%d"}`, i)
	}
	doc.WriteString(`]}`)
	errStop := errors.New("stop")
	added := 0
	_, err := decodeSnapshot(strings.NewReader(doc.String()), func(e configwire.Entity) error {
		if added++; added == entityBatch+3 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Errorf("err = %v, want the error of add", err)
	}
	if added != entityBatch+3 {
		t.Errorf("add called %d times, want it not called after it failed", added)
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
		raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
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
