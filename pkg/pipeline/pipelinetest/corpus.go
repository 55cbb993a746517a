// Package pipelinetest holds the policy corpus that management's write-time check and a node's
// compile are tested against (issue 11): the same documents in pkg/pipeline's unit test, the
// end-to-end test through management and a real node, and the seeds of the fuzz target that
// compares the two.
package pipelinetest

import (
	_ "embed"
	"fmt"
	"strconv"
	"strings"
)

//go:embed corpus.txt
var corpus string

// Entry is one document of the corpus.
type Entry struct {
	Name string
	// Status is what a handshake with a valid subscription key from 127.0.0.1 gets once the
	// document is a WebSocket API's onHandshake policy; 0 means management refuses it.
	Status int
	// Document is the whole policy document. Where the corpus says BACKEND, the test's
	// backend URL goes (Document.With).
	Document Document
}

// Document is a policy document that may hold the placeholder BACKEND.
type Document string

// With returns the document with BACKEND replaced by backend.
func (d Document) With(backend string) string {
	return strings.ReplaceAll(string(d), "BACKEND", backend)
}

// NamedValues are the named values the corpus refers to, by name: value and whether it is secret.
var NamedValues = map[string]struct {
	Value  string
	Secret bool
}{
	"nv-plain":  {"hello", false},
	"nv-expr":   {"@(context.Api.Name)", false},
	"nv-calls":  {"100", false},
	"nv-secret": {"corpus-secret-value", true},
}

// Backends are the Single backend entities the corpus refers to with backend-id, by name: their
// URL, which may be the placeholder BACKEND.
var Backends = map[string]Document{
	"corpus-backend": "BACKEND",
}

// Fragments are the policy fragments the corpus includes, by id, in format xml. They use
// the corpus's named values, so they are created after them.
var Fragments = map[string]string{
	"frag-forbid-loopback": `<fragment><ip-filter action="forbid"><address>127.0.0.1</address></ip-filter></fragment>`,
	"frag-tenant":          `<fragment><check-header name="X-Tenant" failed-check-httpcode="403" failed-check-error-message="no tenant" ignore-case="true"><value>{{nv-plain}}</value></check-header></fragment>`,
	"frag-rate":            `<fragment><rate-limit calls="{{nv-calls}}" renewal-period="60" /><set-header name="X-Fragment" exists-action="override"><value>@(context.Api.Name)</value></set-header></fragment>`,
	"frag-unsupported":     `<fragment><cors><allowed-origins><origin>*</origin></allowed-origins></cors></fragment>`,
}

// Corpus returns the entries of corpus.txt, in order. It panics on a malformed line: the
// file is part of the build.
func Corpus() []Entry {
	var out []Entry
	for i, line := range strings.Split(corpus, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.SplitN(line, " | ", 3)
		if len(parts) != 3 {
			panic(fmt.Sprintf("corpus.txt:%d: want three fields separated by \" | \"", i+1))
		}
		e := Entry{Name: parts[1]}
		if parts[0] != "refuse" {
			n, err := strconv.Atoi(parts[0])
			if err != nil {
				panic(fmt.Sprintf("corpus.txt:%d: %q is neither refuse nor a status", i+1, parts[0]))
			}
			e.Status = n
		}
		doc := parts[2]
		if !strings.HasPrefix(doc, "<policies") {
			doc = "<policies><inbound><base />" + doc + "</inbound></policies>"
		}
		e.Document = Document(doc)
		out = append(out, e)
	}
	return out
}
