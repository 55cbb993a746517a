package pipeline_test

import (
	"strings"
	"testing"

	"gatehouse.dev/pkg/pipeline"
	"gatehouse.dev/pkg/pipeline/pipelinetest"
	"gatehouse.dev/pkg/policy"
)

// corpusEnv is the compile environment of the corpus: its named values and backends, as
// management and a node hold them (by lower-cased name).
func corpusEnv() pipeline.Env {
	env := pipeline.Env{NamedValues: map[string]string{}, Backends: map[string]string{}}
	for name, u := range pipelinetest.Backends {
		env.Backends[name] = u.With("ws://127.0.0.1:1/b")
	}
	for name, nv := range pipelinetest.NamedValues {
		env.NamedValues[name] = nv.Value
		if nv.Secret {
			env.Secrets = append(env.Secrets, nv.Value)
		}
	}
	env.Fragments = map[string]pipeline.Fragment{}
	for id, v := range pipelinetest.Fragments {
		f, err := policy.ParseFragment(v, policy.FormatXML)
		env.Fragments[id] = pipeline.Fragment{Doc: f, Err: err}
	}
	return env
}

// TestCorpus checks the verdict of Check on every corpus document at a WebSocket API's
// operation scope, where management also refuses policies a handshake cannot run: refused
// documents fail to parse or compile, the others compile. The end-to-end test
// (management's e2e TestPolicyCorpus) checks what a node then does with them.
func TestCorpus(t *testing.T) {
	t.Parallel()
	entries := pipelinetest.Corpus()
	if len(entries) < 100 {
		t.Fatalf("the corpus has %d documents, want at least 100", len(entries))
	}
	for _, e := range entries {
		t.Run(e.Name, func(t *testing.T) {
			t.Parallel()
			doc, err := policy.Parse(e.Document.With("ws://127.0.0.1:1/b"), policy.FormatXML)
			env := corpusEnv()
			if err == nil && unsupported(doc, env) {
				err = &policy.SyntaxError{Msg: "unsupported at operation scope"}
			}
			if err == nil {
				err = pipeline.Check(doc, "operation:corpus/onHandshake", env)
			}
			switch {
			case e.Status == 0 && err == nil:
				t.Errorf("accepted; the corpus says management refuses it")
			case e.Status != 0 && err != nil:
				t.Errorf("refused: %v", err)
			case err != nil && strings.Contains(err.Error(), pipelinetest.NamedValues["nv-secret"].Value):
				t.Errorf("the error quotes a secret named value: %v", err)
			}
		})
	}
}

// unsupported reports whether doc, or a fragment it includes, holds a policy Gatehouse does
// not run, which management refuses at a WebSocket API's operation scope.
func unsupported(doc *policy.Document, env pipeline.Env) bool {
	if len(doc.Unsupported()) > 0 {
		return true
	}
	for _, ref := range doc.Fragments() {
		if f := env.Fragments[strings.ToLower(ref.ID)]; f.Doc != nil && len(f.Doc.Unsupported()) > 0 {
			return true
		}
	}
	return false
}
