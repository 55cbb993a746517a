package compiled

import (
	"slices"
	"strings"
	"testing"

	"gatehouse.dev/pkg/configwire"
)

// fragmentEnt is a policy fragment setting header to value.
func fragmentEnt(name, header, value string) configwire.Entity {
	return ent(configwire.KindPolicyFragment, "", name, obj{"format": "xml",
		"value": `<fragment><set-header name="` + header + `" exists-action="override"><value>` + value + `</value></set-header></fragment>`})
}

// includeEnt is a policy at parent including the fragment id after <base/>.
func includeEnt(parent, id string) configwire.Entity {
	return ent(configwire.KindPolicy, parent, "policy", obj{"format": "xml",
		"value": `<policies><inbound><base /><include-fragment fragment-id="` + id + `" /></inbound></policies>`})
}

// TestFragments checks that a node expands the fragments its policies include, recompiles what
// includes a fragment when the fragment changes, and fails closed only the APIs whose
// fragment is gone or does not parse.
func TestFragments(t *testing.T) {
	t.Parallel()
	snap := testSnapshot()
	snap.Entities = append(snap.Entities, fragmentEnt("stamp", "X-Frag", "one"), includeEnt("apis/chat/operations/onHandshake", "Stamp"))
	b, cfg := load(t, snap)
	const op = "op chat/onHandshake GET /: "
	wantLine := func(cfg *Config, line string) {
		t.Helper()
		if got := view(t, cfg); !slices.Contains(got, line) {
			t.Errorf("view lacks %q:\n%s", line, strings.Join(got, "\n"))
		}
	}
	wantLine(cfg, op+"[X-Api=hello X-Frag=one X-Global=g]")

	cfg, err := b.Apply(change(testRevision+1, put(fragmentEnt("stamp", "X-Frag", "two"))))
	if err != nil {
		t.Fatal(err)
	}
	wantLine(cfg, op+"[X-Api=hello X-Frag=two X-Global=g]")

	cfg, err = b.Apply(change(testRevision+2, put(ent(configwire.KindPolicyFragment, "", "stamp", obj{"value": "<fragment><no-such-policy /></fragment>"}))))
	if err != nil {
		t.Fatal(err)
	}
	wantLine(cfg, op+"[<refused 500 PolicyCompileFailure>]")
	wantLine(cfg, "op orders/latest GET /latest: [X-Global=g X-Secret=s3cr3t]")

	cfg, err = b.Apply(change(testRevision+3, del(configwire.KindPolicyFragment, "", "stamp")))
	if err != nil {
		t.Fatal(err)
	}
	if f := cfg.Failures(); len(f) != 2 || f[0].Policy != "include-fragment" || !strings.Contains(f[0].Error, "Policy fragment with id 'Stamp' could not be found.") {
		t.Errorf("failures %+v, want the include-fragment of chat's onHandshake in both contexts", f)
	}
	cfg, err = b.Apply(change(testRevision+4, put(fragmentEnt("STAMP", "X-Frag", "three"))))
	if err != nil {
		t.Fatal(err)
	}
	wantLine(cfg, op+"[X-Api=hello X-Frag=three X-Global=g]")
	if len(cfg.Failures()) != 0 {
		t.Errorf("failures %+v after the fragment came back", cfg.Failures())
	}
}
