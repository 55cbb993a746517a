package compiled

import (
	"strings"
	"testing"
	"unicode/utf8"

	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/pipeline"
	"gatehouse.dev/pkg/pipeline/pipelinetest"
	"gatehouse.dev/pkg/pipeline/ratecount"
	"gatehouse.dev/pkg/policy"
)

// fuzzScopes are the parents a fuzzed document is stored under, each one that the served
// APIs of testSnapshot compose: global, a product, an API and an operation.
var fuzzScopes = []string{"", "products/starter", "apis/chat", "apis/chat/operations/onHandshake"}

// FuzzManagementAndNodeAgree feeds one policy document to management's write-time check
// (policy.Parse and pipeline.Check with the service's named values, what catalog runs on a
// PUT) and to a node's compile (a Builder loading a snapshot that holds the document), and
// fails when they disagree: management accepting what the node then fails closed, or refusing
// what the node would compile (issue 11).
func FuzzManagementAndNodeAgree(f *testing.F) {
	for _, e := range pipelinetest.Corpus() {
		for i := range fuzzScopes {
			f.Add(e.Document.With("ws://backend.internal/x"), uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, doc string, which uint8) {
		if !utf8.ValidString(doc) {
			// A document reaches management and the node inside JSON, which cannot carry
			// invalid UTF-8: the two would not see the same bytes.
			return
		}
		parent := fuzzScopes[int(which)%len(fuzzScopes)]
		snap := testSnapshot()
		env := pipeline.Env{NamedValues: map[string]string{}}
		ents := snap.Entities[:0:0]
		for _, e := range snap.Entities {
			if e.Kind == configwire.KindPolicy && e.Parent == parent {
				continue // the fuzzed document replaces the scope's own
			}
			ents = append(ents, e)
		}
		snap.Entities = append(ents, ent(configwire.KindPolicy, parent, "policy", obj{"value": doc, "format": "xml"}))
		env.Backends = map[string]string{}
		for name, u := range pipelinetest.Backends {
			snap.Entities = append(snap.Entities, ent(configwire.KindBackend, "", name, obj{"url": u.With("ws://backend.internal/b"), "protocol": "http"}))
			env.Backends[name] = u.With("ws://backend.internal/b")
		}
		for id, v := range pipelinetest.Fragments {
			snap.Entities = append(snap.Entities, ent(configwire.KindPolicyFragment, "", id, obj{"value": v, "format": "xml"}))
		}
		b := NewBuilder(pipeline.Env{Counters: ratecount.NewMemory(), Keys: pipeline.NewKeySource(nil, nil)})
		// Management's environment holds the same named values, by name and display name.
		nv, secrets := b.namedValuesOf(snap.Entities)
		env.NamedValues, env.Secrets = nv, secrets
		// And the same fragments, as management parses them.
		env.Fragments = map[string]pipeline.Fragment{}
		for _, e := range snap.Entities {
			if e.Kind == configwire.KindPolicyFragment {
				env.Fragments[strings.ToLower(e.Name)] = parseFragment(e)
			}
		}

		parsed, err := policy.Parse(doc, policy.FormatXML)
		if err == nil {
			err = pipeline.Check(parsed, "scope", env)
		}
		cfg, lerr := b.Load(snap)
		if lerr != nil {
			t.Fatalf("Load failed on a policy document: %v", lerr)
		}
		failures := cfg.Failures()
		switch {
		case err == nil && len(failures) > 0:
			t.Fatalf("management accepts the document at %q, the node fails it: %+v", parent, failures)
		case err != nil && len(failures) == 0:
			t.Fatalf("management refuses the document at %q (%v), the node compiles it", parent, err)
		}
		for _, f := range failures {
			if strings.Contains(f.Error, "s3cr3t") {
				t.Fatalf("a failure quotes the secret named value: %+v", f)
			}
		}
	})
}
