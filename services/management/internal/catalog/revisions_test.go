package catalog_test

import (
	"testing"

	"gatehouse.dev/management/internal/catalog"
)

func TestSplitRevision(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, base, rev string
		ok, bad         bool
	}{
		{name: "chat", base: "chat"},
		{name: "chat;rev=2", base: "chat", rev: "2", ok: true},
		{name: "chat;REV=12", base: "chat", rev: "12", ok: true},
		{name: "chat;x=2", bad: true},
		{name: "chat;", bad: true},
		{name: ";rev=1", bad: true},
		{name: "chat;rev=0", bad: true},
		{name: "chat;rev=02", bad: true},
		{name: "chat;rev=2;rev=3", bad: true},
		{name: "chat;rev=", bad: true},
	} {
		base, rev, ok, err := catalog.SplitRevision(tc.name)
		if (err != nil) != tc.bad || (!tc.bad && (base != tc.base || rev != tc.rev || ok != tc.ok)) {
			t.Errorf("SplitRevision(%q) = %q, %q, %v, %v", tc.name, base, rev, ok, err)
		}
	}
}

func FuzzSplitRevision(f *testing.F) {
	for _, s := range []string{"chat", "chat;rev=2", "a;", ";", "x;rev=99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		base, rev, ok, err := catalog.SplitRevision(name)
		if err == nil && ok && base+";rev="+rev != name && len(base)+5+len(rev) != len(name) {
			t.Errorf("SplitRevision(%q) = %q, %q does not rebuild the name", name, base, rev)
		}
	})
}
